// Package limit is Cairn's rate limiting: the Limiter interface (may one
// more request of a key proceed now, and if not, how long until it may) and
// Buckets, its in-process implementation, a token bucket per key. The Redis
// engine implements Limiter too, with one bucket per key shared by every node.
// The HTTP server (internal/httpapi) decides what a key is (a player, a
// client address) and what a refusal answers.
//
// # Bounds
//
// Memory is bounded: Buckets tracks at most KeysMax keys. A bucket that has
// refilled to its burst is indistinguishable from a fresh one, so forgetting
// it loses nothing; those go first. Only when every tracked bucket is in use
// (KeysMax keys all active within one refill period) are some in-use buckets
// forgotten, which hands them a fresh burst: bounded memory is preferred to
// perfect fairness under that attack. A rate above RateMax is refused rather
// than read as "no limit at all".
//
// # Concurrency
//
// Buckets is safe for concurrent use; keys are spread over independently
// locked shards, each lock held only for a map lookup or insert (and, when
// the shard is full, one sweep of it). A check of a known key allocates
// nothing.
package limit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// KeysMaxDefault bounds the keys a Buckets tracks; a key costs ~200
	// bytes, so the default is ~25 MiB at most per Buckets.
	KeysMaxDefault = 1 << 17
	// RateMax keeps a typo (5e9) from being read as "no limit at all" by
	// float arithmetic; it is far above any sane request rate. Tokens per second.
	RateMax = 1e6
	// shardCount spreads keys over independently locked maps.
	shardCount = 64
)

// Limiter decides whether one more request of a key may proceed now.
// Implementations must be safe for concurrent use. Buckets is the
// in-process implementation; the Redis engine's Limiter (GCRA kept in Redis)
// is one shared by every node.
type Limiter interface {
	// Allow takes one token from key's bucket. When the bucket is empty it
	// returns false and how long until a token will be there. An error means
	// the limiter could not decide (its store is unreachable); the HTTP
	// server then lets the request through and logs it (it fails open: the
	// limiter must never be what takes claims down).
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// BucketsConfig configures NewBuckets.
type BucketsConfig struct {
	// Rate is the sustained rate, tokens per second (> 0).
	Rate float64
	// Burst is the bucket size: how many requests may come at once (>= 1).
	Burst int
	// KeysMax bounds the keys tracked; default KeysMaxDefault.
	KeysMax int
	// Clock is the time buckets refill by; default time.Now.
	Clock func() time.Time
}

// Buckets is an in-process Limiter: one golang.org/x/time/rate token bucket
// per key, in sharded maps of bounded size (see the package doc). It is safe for concurrent use; each shard has its own lock,
// held only for a map lookup or insert (and, when the shard is full, one
// sweep of it).
type Buckets struct {
	limit      rate.Limit
	burst      int
	shardLen   int
	clock      func() time.Time
	seed       maphash.Seed
	shards     [shardCount]bucketShard
	perToken   time.Duration // time to refill one token
	fullTokens float64
}

type bucketShard struct {
	sync.Mutex
	m map[string]*rate.Limiter
	_ [48]byte // one shard per 64-byte cache line: shards' locks do not share one
}

// NewBuckets validates cfg and returns an empty set of buckets.
func NewBuckets(cfg BucketsConfig) (*Buckets, error) {
	var errs []error
	if !(cfg.Rate > 0 && cfg.Rate <= RateMax) {
		errs = append(errs, fmt.Errorf("limit: rate %v/s not in (0, %g]", cfg.Rate, RateMax))
	}
	if cfg.Burst < 1 || cfg.Burst > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("limit: burst %d must be at least 1", cfg.Burst))
	}
	if cfg.KeysMax < 0 {
		errs = append(errs, fmt.Errorf("limit: keys max %d must not be negative", cfg.KeysMax))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.KeysMax == 0 {
		cfg.KeysMax = KeysMaxDefault
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	b := &Buckets{
		limit:      rate.Limit(cfg.Rate),
		burst:      cfg.Burst,
		shardLen:   max(1, (cfg.KeysMax+shardCount-1)/shardCount),
		clock:      cfg.Clock,
		seed:       maphash.MakeSeed(),
		perToken:   time.Duration(float64(time.Second) / cfg.Rate),
		fullTokens: float64(cfg.Burst),
	}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*rate.Limiter)
	}
	return b, nil
}

// Allow implements Limiter; it never fails.
func (b *Buckets) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	now := b.clock()
	lim := b.bucket(key, now)
	if lim.AllowN(now, 1) {
		return true, 0, nil
	}
	// AllowN took nothing; the wait is the time the missing fraction of a
	// token takes to refill. (Reserve would say the same but allocates.)
	missing := 1 - lim.TokensAt(now)
	return false, time.Duration(math.Ceil(missing * float64(b.perToken))), nil
}

// Len is the number of keys tracked.
func (b *Buckets) Len() int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.Lock()
		n += len(sh.m)
		sh.Unlock()
	}
	return n
}

// bucket returns key's bucket, creating it (and making room) if needed.
func (b *Buckets) bucket(key string, now time.Time) *rate.Limiter {
	sh := &b.shards[maphash.String(b.seed, key)%shardCount]
	sh.Lock()
	defer sh.Unlock()
	if lim, ok := sh.m[key]; ok {
		return lim
	}
	if len(sh.m) >= b.shardLen {
		b.sweep(sh, now)
	}
	lim := rate.NewLimiter(b.limit, b.burst)
	// The key usually aliases request memory (a header, a token's subject
	// kept by the token cache); the map keeps its own copy.
	sh.m[strings.Clone(key)] = lim
	return lim
}

// sweep makes room in a full shard: first it forgets every bucket that has
// refilled (no information lost); if that frees less than an eighth of the
// shard, it forgets arbitrary buckets (map order) until an eighth is free,
// so the next sweeps are at least shardLen/8 inserts apart.
func (b *Buckets) sweep(sh *bucketShard, now time.Time) {
	for k, lim := range sh.m {
		if lim.TokensAt(now) >= b.fullTokens {
			delete(sh.m, k)
		}
	}
	keep := b.shardLen - max(1, b.shardLen/8)
	for k := range sh.m {
		if len(sh.m) <= keep {
			break
		}
		delete(sh.m, k)
	}
}
