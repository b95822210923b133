package redis

import (
	"context"
	"strconv"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestClaimTrace: a claim under a sampled span records engine.submit under
// it and the claim's Redis calls under that, in both modes (the Function
// call when direct, the XADD of the request when queued); a claim without a
// span records nothing.
func TestClaimTrace(t *testing.T) {
	srv := redistest.Start(t)
	for _, direct := range []bool{false, true} {
		t.Run("direct="+strconv.FormatBool(direct), func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			n := start(t, testConfig(srv, func(c *Config) { c.Direct = direct }))
			hs := putFixture(t, n.Engine, 2, 5)
			pfx := strconv.FormatBool(direct)
			if _, err := n.Claim(context.Background(), claimAt("untraced"+pfx, "k0", hs[0])); err != nil {
				t.Fatal(err)
			}
			ctx, root := tp.Tracer("test").Start(context.Background(), "request")
			got, err := n.Claim(ctx, claimAt("alice"+pfx, "k1", hs[1]))
			root.End()
			if err != nil || got.Event.Outcome != hunt.Granted {
				t.Fatalf("Claim = %+v, %v; want granted", got, err)
			}
			byName := map[string][]sdktrace.ReadOnlySpan{}
			for _, sp := range rec.Ended() {
				if sp.SpanContext().TraceID() != root.SpanContext().TraceID() {
					t.Errorf("span %q in trace %s; want every span in the claim's trace", sp.Name(), sp.SpanContext().TraceID())
				}
				byName[sp.Name()] = append(byName[sp.Name()], sp)
			}
			submit := byName["engine.submit"]
			if len(submit) != 1 || submit[0].Parent().SpanID() != root.SpanContext().SpanID() {
				t.Fatalf("engine.submit spans %v; want one, child of the request's span (all: %v)", submit, byName)
			}
			call := "redis XADD"
			if direct {
				call = "redis FCALL"
			}
			calls := byName[call]
			if len(calls) != 1 || calls[0].Parent().SpanID() != submit[0].SpanContext().SpanID() || calls[0].SpanKind() != trace.SpanKindClient {
				t.Fatalf("%s spans %v; want one client span, child of engine.submit (all: %v)", call, calls, byName)
			}
		})
	}
}
