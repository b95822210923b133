package telemetry

import (
	"context"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestStartChildOff: a hop whose caller is not traced (no span, or a span
// sampled out) starts nothing and allocates nothing.
func TestStartChildOff(t *testing.T) {
	ctx := context.Background()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	unsampled, sp := tp.Tracer("test").Start(ctx, "root")
	defer sp.End()
	for name, c := range map[string]context.Context{"no span": ctx, "unsampled span": unsampled} {
		if got, sp := StartChild(c, "hop"); sp != nil || got != c {
			t.Errorf("%s: StartChild = %v, %v; want the same context and a nil span", name, got, sp)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = StartChild(c, "hop") }); n != 0 {
			t.Errorf("%s: StartChild allocates %v times; want 0", name, n)
		}
	}
}

// TestStartChildOn: under a sampled span, StartChild and ChildAt record
// children of it with the parent's provider.
func TestStartChildOn(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	_, hop := StartChild(ctx, "hop")
	if hop == nil {
		t.Fatal("StartChild under a sampled span = nil span")
	}
	start := time.Now()
	ChildAt(hop, "batch", start, start.Add(time.Millisecond))
	hop.End()
	root.End()
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	if spans["hop"] == nil || spans["hop"].Parent().SpanID() != root.SpanContext().SpanID() {
		t.Fatalf("hop span %v; want a child of root", spans["hop"])
	}
	b := spans["batch"]
	if b == nil || b.Parent().SpanID() != hop.SpanContext().SpanID() || !b.StartTime().Equal(start) || b.EndTime().Sub(b.StartTime()) != time.Millisecond {
		t.Fatalf("batch span %v; want a child of hop from start, 1 ms long", b)
	}
}

// TestTracerProviderFromEnv: tracing is off without an OTLP endpoint, off
// when the SDK is disabled, refused for a protocol Cairn does not ship, and
// on with an endpoint.
func TestTracerProviderFromEnv(t *testing.T) {
	ctx := context.Background()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for name, kv := range map[string]map[string]string{
		"unset":    {},
		"disabled": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
	} {
		tp, stop, err := TracerProvider(ctx, env(kv))
		if tp != nil || err != nil || stop(ctx) != nil {
			t.Errorf("%s: TracerProvider = %v, %v; want nil, nil (off)", name, tp, err)
		}
	}
	_, _, err := TracerProvider(ctx, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}))
	if !errors.Is(err, ErrOTLPProtocol) {
		t.Errorf("grpc protocol: err = %v; want ErrOTLPProtocol", err)
	}
	tp, stop, err := TracerProvider(ctx, env(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}))
	if tp == nil || err != nil {
		t.Fatalf("with an endpoint: TracerProvider = %v, %v; want a provider", tp, err)
	}
	if err := stop(ctx); err != nil {
		t.Errorf("shutdown with nothing exported: %v", err)
	}
}
