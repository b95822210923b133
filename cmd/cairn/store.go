package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/engine/redis"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// openEngine opens the store --store names: the embedded Pebble store under
// <data>/store, or a Redis engine for redis:// and rediss:// URLs (one
// Redis) and redis-cluster:// and rediss-cluster:// URLs (a Redis Cluster).
func openEngine(ctx context.Context, f serveFlags, log *slog.Logger, m *telemetry.Metrics) (engine.Engine, error) {
	switch {
	case f.store == "embedded":
		e, err := embedded.Open(embedded.Config{
			Dir: filepath.Join(f.data, "store"), Partitions: f.partitions, Logger: log, Metrics: m,
			FaultHook: f.faultHook, DiskFreeMinBytes: diskFreeMinBytes(f.diskFreeMinMiB),
			IdempotencyWindow: f.idemWindow, SnapshotInterval: snapshotInterval(f.snapInterval),
			LogRetention: f.logRetention,
		})
		// Loading a big store leaves garbage that a high GC target would
		// keep in the process for a long time: give it back now, once.
		debug.FreeOSMemory()
		return e, err
	case strings.HasPrefix(f.store, "redis://") || strings.HasPrefix(f.store, "rediss://") ||
		strings.HasPrefix(f.store, "redis-cluster://") || strings.HasPrefix(f.store, "rediss-cluster://"):
		var direct bool
		switch f.redisMode {
		case "direct":
			direct = true
		case "stream":
		default:
			return nil, fmt.Errorf("--redis-mode %q: want direct or stream", f.redisMode)
		}
		// The flag's -1 is the mode's default (Config's 0); its 0 asks no
		// replica in either mode (Config's negative).
		replicas := f.redisReplicas
		switch {
		case replicas < 0:
			replicas = 0
		case replicas == 0:
			replicas = -1
		}
		return redis.Open(ctx, redis.Config{
			URL: f.store, PoolSize: f.redisPool, Partitions: f.partitions,
			AllowVolatile: f.allowVolatile, Direct: direct, MinReplicas: replicas, Logger: log, Metrics: m,
		})
	default:
		return nil, fmt.Errorf("--store %q: want embedded, redis://host:port/db, rediss://host:port/db, "+
			"redis-cluster://host:port[,host:port,...] or rediss-cluster:// (TLS)", redactStore(f.store))
	}
}

// snapshotInterval converts --snapshot-interval (0: never) to the engine's
// setting (negative: never).
func snapshotInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// diskFreeMinBytes converts --disk-free-min-mib (negative: off).
func diskFreeMinBytes(mib int64) int64 {
	if mib < 0 {
		return -1
	}
	if mib == 0 {
		return -1 // 0 MiB free is no margin at all: the check is off
	}
	return mib << 20
}

// redactStore hides a password in a --store value for messages.
func redactStore(s string) string {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return scheme + "://xxxxx@" + rest[at+1:]
		}
	}
	return s
}
