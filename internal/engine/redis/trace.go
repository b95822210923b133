package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/telemetry"
)

// callSpanOpts are the options of every Redis call span, built once so that
// an unsampled claim allocates nothing for them.
var callSpanOpts = []trace.SpanStartOption{
	trace.WithSpanKind(trace.SpanKindClient),
	trace.WithAttributes(attribute.String("db.system.name", "redis")),
}

// startCall starts a client span for one Redis call on a request's path
// ("redis FCALL", "redis XADD", "redis HGET"), a child of the request's
// engine span, only when that span is sampled (telemetry.StartChild): sp is
// nil otherwise. endCall ends it.
func startCall(ctx context.Context, name string) (context.Context, trace.Span) {
	return telemetry.StartChild(ctx, name, callSpanOpts...)
}

// endCall ends sp (nil: not sampled), marking a failed call.
func endCall(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, "redis call failed")
	}
	sp.End()
}
