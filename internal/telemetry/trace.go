package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names the tracer of every Cairn span.
const TracerName = "github.com/cairnhq/cairn"

// Tracing and its cost
//
// One claim is traced across its hops: the HTTP handler (httpapi), the
// engine's submit, the partition's decide, the commit and the projection's
// apply (embedded), or the Redis calls (Redis engine). Only the HTTP layer
// holds a tracer; every later hop starts its span from the span it was
// handed (StartChild, ChildAt), and only when that span is recording, that
// is, sampled. So with tracing off (no provider) the HTTP layer adds nothing
// at all and the engine pays one context lookup per claim; with tracing on,
// an unsampled claim pays the HTTP layer's non-recording span and nothing
// after it.

// ErrOTLPProtocol: OTEL_EXPORTER_OTLP_PROTOCOL names a protocol Cairn does not ship.
var ErrOTLPProtocol = errors.New("telemetry: only the http/protobuf OTLP protocol is supported")

// TracerProvider builds the OpenTelemetry tracer provider from the standard
// OTEL_* environment variables (read through getenv): tracing is on when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (and OTEL_SDK_DISABLED is not true), exported by OTLP over HTTP/protobuf in
// batches; the sampler comes from OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (default: parent-based, always on), the service
// name from OTEL_SERVICE_NAME (default cairn). Off, it returns a nil
// provider and a no-op shutdown. shutdown flushes the spans still queued.
func TracerProvider(ctx context.Context, getenv func(string) string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") ||
		getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, noop, nil
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(k); v != "" {
			if v != "http/protobuf" {
				return nil, noop, fmt.Errorf("%w: %s=%s", ErrOTLPProtocol, k, v)
			}
			break
		}
	}
	// The exporter reads the endpoint, headers, timeout, compression and
	// TLS settings from the environment itself.
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, noop, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = Service
	}
	res := resource.NewSchemaless(attribute.String("service.name", name))
	p := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return p, p.Shutdown, nil
}

// StartChild starts a span named name as a child of ctx's span, with the
// same provider, when ctx's span is recording; otherwise it returns ctx and
// a nil span, having allocated nothing. The caller ends a non-nil span.
func StartChild(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(TracerName).Start(ctx, name, opts...)
}

// ChildAt records a finished span named name, child of parent (which may
// have ended), from start to end: the share of one request in a batch's
// work, timed by the batch.
func ChildAt(parent trace.Span, name string, start, end time.Time, attrs ...attribute.KeyValue) {
	ctx := trace.ContextWithSpan(context.Background(), parent)
	_, sp := parent.TracerProvider().Tracer(TracerName).Start(ctx, name,
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	sp.End(trace.WithTimestamp(end))
}
