package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// fixedServer answers every request with resp, on as many connections as
// come. It reads requests with no allocation, so a benchmark against it
// measures the client (the server runs in the same process).
func fixedServer(b *testing.B, resp []byte) *url.URL {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					clen := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
						if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
							clen, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
						}
					}
					if _, err := br.Discard(clen); err != nil {
						return
					}
					if _, err := nc.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// claimAnswer is what Cairn answers a granted claim, headers included.
var claimAnswer = canned(http.StatusCreated,
	`{"claim_id":"61.1","player":"alice","hunt":"demo","hotspot":"notre-dame","outcome":"granted","reward":25,"points":10,"tickets_left":999,"epoch":{"partition":61,"seq":1},"consistency_token":"61.1"}`,
	"Cache-Control: no-store", "Content-Type: application/json", "Date: Tue, 01 Dec 2026 02:18:53 GMT")

// BenchmarkExecute is the generator's own cost per request (send, read,
// parse, record) against a server that answers at once with a claim's
// answer: the ceiling of what one client process can drive.
func BenchmarkExecute(b *testing.B) {
	u := fixedServer(b, claimAnswer)
	c := newClient(context.Background(), u, "", 256, 10*time.Second)
	defer c.close()
	rec := newRecorder()
	w := testWorld(1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rq := w.claim(1, 0, "s", 48.85, 2.35)
			rec.execute(c, rq, time.Now())
		}
	})
}

// BenchmarkExchange is one raw-client exchange of a pre-built claim,
// without planning or recording.
func BenchmarkExchange(b *testing.B) {
	u := fixedServer(b, claimAnswer)
	c := newClient(context.Background(), u, "", 4, 10*time.Second)
	defer c.close()
	rq := testWorld(1).claim(1, 0, "s", 48.85, 2.35)
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := c.do(rq); resp.status != 201 {
			b.Fatalf("status %d, %v", resp.status, resp.err)
		}
	}
}

// BenchmarkHuntPlan is the scheduler goroutine's cost to plan one request of
// the hunt mix; it runs inline with the schedule, so it must stay small.
func BenchmarkHuntPlan(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := testWorld(20)
	p := newHuntPlanner(w, rng, huntSpots(rng, 300, 10000), newRecorder())
	b.ReportAllocs()
	for i := range int64(b.N) {
		_ = p.next(i)
	}
}
