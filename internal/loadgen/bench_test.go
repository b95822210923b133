package loadgen

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// BenchmarkExecute is the generator's own cost per request (build, send,
// read, parse, record) against a server that answers at once: the ceiling
// of what one client process can drive, to compare with the server's.
func BenchmarkExecute(b *testing.B) {
	body := []byte(`{"claim_id":"3.17","player":"p1","hunt":"h","hotspot":"s","outcome":"granted","reward":1,"points":1,"tickets_left":9,"epoch":{"partition":3,"seq":17},"consistency_token":"3.17"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c := newClient(u, "", 256, 10*time.Second)
	defer c.close()
	rec := newRecorder()
	w := testWorld(1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rq := w.claim(1, 0, "s", 48.85, 2.35)
			rec.execute(ctx, c, rq, time.Now())
		}
	})
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
