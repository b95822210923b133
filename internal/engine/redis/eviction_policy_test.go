package redis

import (
	"context"
	"errors"
	"testing"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
)

// TestOpenRefusesEvictingRedis: a Redis whose maxmemory-policy may evict
// any key (allkeys-*) silently drops idempotency records, claimer sets,
// granted counts and wallets when memory fills (I1-I4), however durable its
// AOF is. Open must refuse it as it refuses a volatile one.
func TestOpenRefusesEvictingRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	raw := rawClient(t, srv)
	if err := raw.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, testConfig(srv))
	if err == nil {
		e.Close()
	}
	if !errors.Is(err, ErrVolatile) {
		t.Fatalf("Open on maxmemory-policy allkeys-lru = %v; want ErrVolatile", err)
	}
	if err := raw.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(ctx, testConfig(srv))
	if err != nil {
		t.Fatalf("Open on maxmemory-policy noeviction = %v; want nil", err)
	}
	e.Close()
}
