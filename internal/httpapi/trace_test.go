package httpapi

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestClaimTrace: one claim on the embedded engine is one span tree: the
// HTTP server span, continuing the trace id and parent of its traceparent
// header; under it the engine's submit; under that the partition's decide,
// the commit and the leaderboard's apply. A claim without traceparent
// starts a trace of its own.
func TestClaimTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	e := newEnv(t, envOption{api: func(c *Config) { c.TracerProvider = tp }})
	s := numSpot(0, 5)
	e.basicHunt(s)

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := e.do(req{method: "POST", path: "/v1/hunts/h1/hotspots/s0/claim", auth: e.token("p1"),
		header: map[string]string{"Idempotency-Key": e.key(), "Traceparent": "00-" + traceID + "-" + parentID + "-01"},
		body:   fmt.Sprintf(`{"lat":%v,"lon":%v}`, s.lat, s.lon)})
	mustStatus(t, "claim", r, http.StatusCreated)

	// The projection applies the batch on its own goroutine, maybe after the
	// answer; the server span ends after the answer is written.
	const rootName = "POST /v1/hunts/{hunt}/hotspots/{id}/claim"
	byName := waitSpans(t, rec, func(sp sdktrace.ReadOnlySpan) bool { return sp.SpanContext().TraceID().String() == traceID },
		rootName, "engine.submit", "partition.decide", "commit", "projection.apply")
	root := one(t, byName, rootName)
	if got := root.Parent().SpanID().String(); got != parentID || !root.Parent().IsRemote() {
		t.Errorf("server span parent = %s (remote %v); want %s from traceparent", got, root.Parent().IsRemote(), parentID)
	}
	if root.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span kind = %v; want server", root.SpanKind())
	}
	submit := one(t, byName, "engine.submit")
	if submit.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("engine.submit parent = %s; want the server span %s", submit.Parent().SpanID(), root.SpanContext().SpanID())
	}
	for _, name := range []string{"partition.decide", "commit", "projection.apply"} {
		sp := one(t, byName, name)
		if sp.Parent().SpanID() != submit.SpanContext().SpanID() {
			t.Errorf("%s parent = %s; want engine.submit %s", name, sp.Parent().SpanID(), submit.SpanContext().SpanID())
		}
		if sp.EndTime().Before(sp.StartTime()) {
			t.Errorf("%s ends (%v) before it starts (%v)", name, sp.EndTime(), sp.StartTime())
		}
	}
	for _, a := range one(t, byName, "partition.decide").Attributes() {
		if a.Key == "cairn.outcome" && a.Value.AsString() != "granted" {
			t.Errorf("partition.decide cairn.outcome = %q; want granted", a.Value.AsString())
		}
	}

	// Without traceparent: a new trace, the server span its root.
	r = e.claim(e.token("p2"), "h1", "s0", e.key(), s.lat, s.lon)
	mustStatus(t, "claim", r, http.StatusCreated)
	other := waitSpans(t, rec, func(sp sdktrace.ReadOnlySpan) bool { return sp.SpanContext().TraceID().String() != traceID }, rootName)
	if fresh := one(t, other, rootName); fresh.Parent().IsValid() {
		t.Fatalf("claim without traceparent: server span's parent = %v; want none (a new trace)", fresh.Parent())
	}
}

// waitSpans polls (deadline 10 s) until the ended spans that keep accepts
// include one of each of names, and returns them by name.
func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, keep func(sdktrace.ReadOnlySpan) bool, names ...string) map[string][]sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		byName := map[string][]sdktrace.ReadOnlySpan{}
		for _, sp := range rec.Ended() {
			if keep(sp) {
				byName[sp.Name()] = append(byName[sp.Name()], sp)
			}
		}
		all := true
		for _, n := range names {
			all = all && len(byName[n]) > 0
		}
		if all {
			return byName
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ended span of each of %v after 10 s; spans: %v", names, byName)
		}
		time.Sleep(time.Millisecond) // polling the recorder
	}
}

func one(t *testing.T, byName map[string][]sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	if n := len(byName[name]); n != 1 {
		t.Fatalf("trace has %d spans named %q; want 1 (spans: %v)", n, name, byName)
	}
	return byName[name][0]
}
