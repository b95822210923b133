package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkClaimHandler runs granted claims through Handler() (routing,
// deadline, JWT check, decoding, the real embedded engine with its synced
// commits, rendering) without the network. Claims run in parallel so the
// engine batches them as it would under load. Each iteration builds its
// request (a few allocations of its own); every (player, hotspot) pair is
// claimed once, so every claim is a grant.
func BenchmarkClaimHandler(b *testing.B) { benchClaims(b, envOption{}) }

// BenchmarkClaimHandlerTracing is BenchmarkClaimHandler with tracing off
// (no provider: the handlers are not even wrapped), on with nothing sampled,
// on with 1 % sampled (parent-based trace-id ratio, as
// OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
// sets it) and on with every claim sampled; spans go to a discarding
// exporter through the SDK's batch processor, as OTLP's would. Compare the
// allocs/op of "off" with BenchmarkClaimHandler before tracing existed:
// tracing off must add none.
func BenchmarkClaimHandlerTracing(b *testing.B) {
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"sampled=0", sdktrace.NeverSample()},
		{"sampled=1%", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
		{"sampled=100%", sdktrace.AlwaysSample()},
	} {
		b.Run(c.name, func(b *testing.B) {
			var opt envOption
			if c.sampler != nil {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler),
					sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				opt.api = func(cfg *Config) { cfg.TracerProvider = tp }
			}
			benchClaims(b, opt)
		})
	}
}

func benchClaims(b *testing.B, opt envOption) {
	e := newEnv(b, opt)
	const players = 1000
	spots := b.N/players + 1
	e.putHunt("h1", `{"name":"Bench","claim_radius_m":100,"max_speed_mps":0}`)
	list := make([]spot, spots)
	for i := range list {
		list[i] = numSpot(i, 1_000_000_000)
	}
	for i := 0; i < spots; i += 1000 {
		e.importSpots("h1", list[i:min(i+1000, spots)]...)
	}
	tokens := make([]string, players)
	for i := range tokens {
		tokens[i] = "Bearer " + e.token("bench-"+strconv.Itoa(i))
	}
	urls := make([]*url.URL, spots)
	bodies := make([][]byte, spots)
	for i, s := range list {
		urls[i], _ = url.Parse("/v1/hunts/h1/hotspots/" + s.id + "/claim")
		bodies[i] = []byte(fmt.Sprintf(`{"lat":%v,"lon":%v}`, s.lat, s.lon))
	}
	h := e.api.Handler()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(64) // many claims in flight, as under load, so commits batch
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		rd := bytes.NewReader(nil)
		for pb.Next() {
			i := int(next.Add(1) - 1)
			p, s := i%players, i/players
			rd.Reset(bodies[s])
			r := &http.Request{Method: "POST", URL: urls[s], Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{"Authorization": {tokens[p]}, "Idempotency-Key": {"bk-" + strconv.Itoa(i)}},
				Body:   io.NopCloser(rd), Host: "bench"}
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.status != http.StatusCreated {
				b.Fatalf("claim %d: status %d; want 201", i, w.status)
			}
		}
	})
}

// BenchmarkClaimCodec is the handler's own per-claim work on the body:
// strict decoding and rendering the answer. It should not allocate.
func BenchmarkClaimCodec(b *testing.B) {
	body := []byte(`{"lat":48.8566,"lon":2.3522}`)
	ev := hunt.Event{Kind: hunt.KindClaimCompleted, Outcome: hunt.Granted, Epoch: hunt.Epoch{Partition: 17, Seq: 123456},
		Player: "player-123", Hunt: "paris", Hotspot: "eiffel", Reward: 10, Points: 5, TicketsLeft: 99}
	buf := make([]byte, 0, renderBufLen)
	b.ReportAllocs()
	for b.Loop() {
		lat, lon, err := jsonwire.DecodeClaim(body)
		if err != nil || lat == 0 || lon == 0 {
			b.Fatal(err)
		}
		buf, _, _ = renderClaim(buf[:0], &ev)
	}
}

// BenchmarkAuthFirstSight is the authenticator on tokens it has not seen
// (each iteration a new player's token, so each one is parsed and verified,
// as for every player's first request); BenchmarkAuthCached on one it has.
func BenchmarkAuthFirstSight(b *testing.B) {
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", time.Now)
	now := time.Now()
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		tok, err := MintToken([]byte(testSecret), hunt.PlayerID("p"+strconv.Itoa(i)), time.Hour, now)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = &http.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if p, err := a.player(reqs[i]); err != nil || p != hunt.PlayerID("p"+strconv.Itoa(i)) {
			b.Fatalf("player(token %d) = %q, %v", i, p, err)
		}
	}
}

func BenchmarkAuthCached(b *testing.B) {
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", time.Now)
	tok, err := MintToken([]byte(testSecret), "alice", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}}
	b.ReportAllocs()
	for b.Loop() {
		if p, err := a.player(r); err != nil || p != "alice" {
			b.Fatalf("player = %q, %v", p, err)
		}
	}
}
