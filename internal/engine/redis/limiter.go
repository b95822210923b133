package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/limit"
)

// gcraScript is a shared per-key rate limit (GCRA, the generic cell rate
// algorithm: a token bucket kept as one "theoretical arrival time" per key).
// It reads Redis' own clock, so every node agrees on time. KEYS[1] is the
// key; ARGV[1] the emission interval and ARGV[2] the burst tolerance, both in
// microseconds. It answers 0 when allowed, else the microseconds until the
// next request would be.
var gcraScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return wait end
local nxt = tat + interval
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return 0
`)

// Limiter is a per-key token bucket (rate per second, burst) shared by every
// node on one Redis: cairn serve uses it for the per-player claim limit in
// Redis mode, so a player cannot multiply their rate by spreading requests
// over nodes. Keys are `cairn:rl:{<key>}` (the key as its own hash tag) and
// expire once the bucket is full again. Safe for concurrent use.
type Limiter struct {
	rdb       goredis.UniversalClient
	interval  int64 // µs per token
	tolerance int64 // µs of burst: (burst-1) * interval
	timeout   time.Duration
}

var _ limit.Limiter = (*Limiter)(nil)

// ErrLimiterConfig reports a rate or burst out of range.
var ErrLimiterConfig = errors.New("limiter: rate must be in (0, 1e6] per second and burst in [1, 1e6]")

// NewLimiter returns a shared limiter on this engine's Redis connection pool.
func (e *Engine) NewLimiter(ratePerSec float64, burst int) (*Limiter, error) {
	if !(ratePerSec > 0 && ratePerSec <= 1e6) || burst < 1 || burst > 1e6 {
		return nil, ErrLimiterConfig
	}
	interval := int64(math.Ceil(1e6 / ratePerSec))
	return &Limiter{rdb: e.rdb, interval: interval, tolerance: int64(burst-1) * interval, timeout: e.cfg.CallTimeout}, nil
}

// Allow takes one token from key's bucket (see limit.Limiter). An error
// (Redis unreachable) lets the caller decide; the HTTP layer fails open.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	wait, err := gcraScript.Run(ctx, l.rdb, []string{"cairn:rl:{" + key + "}"}, l.interval, l.tolerance).Int64()
	if err != nil {
		return false, 0, fmt.Errorf("redis limiter: %w", err)
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond, nil
	}
	return true, 0, nil
}
