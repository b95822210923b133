package httpapi

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads the W3C traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// traced wraps a route's handler in a server span named after the route
// ("POST /v1/hunts/{hunt}/hotspots/{id}/claim"), continuing the trace of an
// incoming traceparent. routes applies it only when a tracer is configured:
// with tracing off the handler is not wrapped at all. The engine's spans are
// children of this one, started only when it is sampled (telemetry.StartChild).
func (s *Server) traced(method, path string, h http.HandlerFunc) http.HandlerFunc {
	name := method + " " + path
	attrs := trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("http.route", path))
	kind := trace.WithSpanKind(trace.SpanKindServer)
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, name, kind, attrs)
		defer span.End()
		if !span.IsRecording() {
			h(w, r.WithContext(ctx))
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	}
}

// statusWriter remembers the status a sampled request was answered with.
// Unwrap lets http.ResponseController (SSE flushes, deadlines) reach the
// connection's own writer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
