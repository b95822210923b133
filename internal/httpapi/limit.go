package httpapi

// Abuse limits: a per-player token bucket on the write routes (claims and
// spends), on by default, and a per-client-IP bucket on every route but the
// health probes, off by default.
//
// Why per player first: players authenticate with tokens this server signed,
// so a player id is a stable identity an attacker cannot multiply at will,
// while IP addresses are shared (carrier NAT, a stadium's Wi-Fi) and belong
// to the edge (a CDN or load balancer), which is why the IP limit is opt-in
// and believes X-Forwarded-For only from configured proxies.
//
// Memory is bounded: Buckets tracks at most KeysMax keys. A bucket that has
// refilled to its burst is indistinguishable from a fresh one, so forgetting
// it loses nothing; those go first. Only when every tracked bucket is in use
// (KeysMax players all writing within one refill period) are some in-use
// buckets forgotten, which hands them a fresh burst: bounded memory is
// preferred to perfect fairness under that attack.

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit defaults and bounds. Rates are tokens per second.
const (
	// ClaimRateDefault and ClaimBurstDefault: a person walking between
	// hotspots claims a few times a minute; a script claims hundreds of times
	// a second. 5/s sustained with bursts of 10 never stops the first.
	ClaimRateDefault  = 5.0
	ClaimBurstDefault = 10
	// LimitOff, as Config.ClaimRate, turns the per-player limit off.
	LimitOff = -1.0
	// LimitKeysMaxDefault bounds the keys each in-process limiter tracks;
	// a key costs ~200 bytes, so the default is ~25 MiB at most per limiter.
	LimitKeysMaxDefault = 1 << 17
	// limitShards spreads keys over independently locked maps.
	limitShards = 64
	// xffHopsMax bounds the X-Forwarded-For entries examined, so a hostile
	// header costs a bounded walk.
	xffHopsMax = 32
	// limitRateMax keeps a typo (5e9) from being read as "no limit at all" by
	// float arithmetic; it is far above any sane request rate.
	limitRateMax = 1e6
)

// ErrRateLimited is the error of a request refused by a rate limit. Its
// answer is built in limit.go, not from the problem table, because its
// Retry-After is computed per answer (the time until the bucket has a token).
var ErrRateLimited = errors.New("rate limited")

// Limiter decides whether one more request of a key may proceed now.
// Implementations must be safe for concurrent use. Buckets is the
// in-process implementation; one shared by every node (for example a
// token bucket or GCRA kept in Redis) plugs in as Config.PlayerLimiter.
type Limiter interface {
	// Allow takes one token from key's bucket. When the bucket is empty it
	// returns false and how long until a token will be there. An error means
	// the limiter could not decide (its store is unreachable); the server
	// then lets the request through and logs it (it fails open: the limiter
	// must never be what takes claims down).
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// BucketsConfig configures NewBuckets.
type BucketsConfig struct {
	// Rate is the sustained rate, tokens per second (> 0).
	Rate float64
	// Burst is the bucket size: how many requests may come at once (>= 1).
	Burst int
	// KeysMax bounds the keys tracked; default LimitKeysMaxDefault.
	KeysMax int
	// Clock is the time buckets refill by; default time.Now.
	Clock func() time.Time
}

// Buckets is an in-process Limiter: one golang.org/x/time/rate token bucket
// per key, in sharded maps of bounded size (see the comment at the top of
// limit.go). It is safe for concurrent use; each shard has its own lock,
// held only for a map lookup or insert (and, when the shard is full, one
// sweep of it).
type Buckets struct {
	limit      rate.Limit
	burst      int
	shardLen   int
	clock      func() time.Time
	seed       maphash.Seed
	shards     [limitShards]bucketShard
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
	if !(cfg.Rate > 0 && cfg.Rate <= limitRateMax) {
		errs = append(errs, fmt.Errorf("httpapi: limit rate %v/s not in (0, %g]", cfg.Rate, limitRateMax))
	}
	if cfg.Burst < 1 || cfg.Burst > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("httpapi: limit burst %d must be at least 1", cfg.Burst))
	}
	if cfg.KeysMax < 0 {
		errs = append(errs, fmt.Errorf("httpapi: limit keys max %d must not be negative", cfg.KeysMax))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	setDefault(&cfg.KeysMax, LimitKeysMaxDefault)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	b := &Buckets{
		limit:      rate.Limit(cfg.Rate),
		burst:      cfg.Burst,
		shardLen:   max(1, (cfg.KeysMax+limitShards-1)/limitShards),
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
	sh := &b.shards[maphash.String(b.seed, key)%limitShards]
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

// clientIP is the address a request is attributed to for the per-IP limit:
// the TCP peer; or, when the peer is a trusted proxy, the right-most
// X-Forwarded-For entry that is not itself a trusted proxy. Entries left of
// that one were written by the client and prove nothing. When every entry
// examined is trusted, or an entry does not parse (a proxy we trust wrote
// garbage), the request is attributed to the last trusted hop.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if len(trusted) == 0 || !isTrusted(peer, trusted) {
		return peer
	}
	hop := peer
	vs := r.Header["X-Forwarded-For"]
	hops := 0
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			hops++
			a, err := netip.ParseAddr(entry)
			if err != nil || hops > xffHopsMax {
				return hop
			}
			a = a.WithZone("").Unmap()
			if !isTrusted(a, trusted) {
				return a
			}
			hop = a
		}
	}
	return hop
}

// peerAddr parses http.Request.RemoteAddr ("ip:port"); the zero Addr if it
// does not parse (all such requests then share one bucket).
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.WithZone("").Unmap()
	}
	return netip.Addr{}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipKey is the bucket key of an address. An IPv6 client usually holds a
// whole /64, so it is limited per /64, not per address.
func ipKey(a netip.Addr) string {
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			a = p.Addr()
		}
	}
	return string(a.AsSlice())
}

// limitPlayer puts h behind the per-player limiter (claims and spends). A
// request whose token does not verify passes through: the handler answers
// its 401, and unauthenticated floods are the IP limit's business.
func (s *Server) limitPlayer(h http.HandlerFunc) http.HandlerFunc {
	if s.playerLimit == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		// The verified-token cache makes this, and the handler's own
		// authentication after it, a map lookup each.
		player, err := s.auth.player(r)
		if err == nil && !s.allow(w, r, s.playerLimit, string(player), s.shedRateLimited, "this player") {
			return
		}
		h(w, r)
	}
}

// limitIP puts every route but the health probes behind the per-IP limiter.
func (s *Server) limitIP(next http.Handler) http.Handler {
	if s.ipLimit == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz":
			// Load balancers probe from a few addresses; limiting them
			// would take a healthy node out of rotation.
		default:
			if !s.allow(w, r, s.ipLimit, ipKey(clientIP(r, s.cfg.TrustedProxies)), s.shedIPLimited, "this client address") {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// allow asks lim about key; when refused it answers 429 rate_limited and
// returns false. A limiter error lets the request through (see Limiter).
func (s *Server) allow(w http.ResponseWriter, r *http.Request, lim Limiter, key string, shed interface{ Inc() }, who string) bool {
	ok, wait, err := lim.Allow(r.Context(), key)
	if err != nil {
		s.limitErrLog.Do(func() {
			s.log.Warn("rate limiter failed; letting requests through", "err", err)
		})
		return true
	}
	if ok {
		return true
	}
	shed.Inc()
	writeRateLimited(w, wait, who)
	return false
}

// problemRateLimited is the problem of a rate-limited request. retry is
// false because writeRateLimited sets its own, computed Retry-After.
var problemRateLimited = problemType{http.StatusTooManyRequests, "rate_limited", "Rate limited", false}

// writeRateLimited answers 429 rate_limited with Retry-After: the whole
// seconds until the bucket holds a token (at least 1: a client that retries
// sooner is refused again).
func writeRateLimited(w http.ResponseWriter, wait time.Duration, who string) {
	secs := int64(math.Ceil(wait.Seconds()))
	secs = min(max(secs, 1), 3600)
	w.Header()["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
	writeProblem(w, problemRateLimited, ErrRateLimited.Error()+": "+who+" sent requests faster than its limit; retry after Retry-After seconds", nil)
}
