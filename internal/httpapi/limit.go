package httpapi

// Abuse limits: a per-player token bucket on the write routes (claims and
// spends), on by default; another per-player bucket on the player's reads
// (hunts, nearby hotspots, the leaderboard with a token, the wallet, the
// ledger, opening a live feed), on by default; and a per-client-IP bucket
// on every route but the health probes, off by default.
//
// Why per player first: players authenticate with tokens this server signed,
// so a player id is a stable identity an attacker cannot multiply at will,
// while IP addresses are shared (carrier NAT, a stadium's Wi-Fi) and belong
// to the edge (a CDN or load balancer), which is why the IP limit is opt-in
// and believes X-Forwarded-For only from configured proxies.
//
// The buckets themselves (and their memory bound) are internal/limit's; this
// file decides what a key is and what a refusal answers.

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/limit"
)

// Limit defaults and bounds. Rates are tokens per second.
const (
	// ClaimRateDefault and ClaimBurstDefault: a person walking between
	// hotspots claims a few times a minute; a script claims hundreds of times
	// a second. 5/s sustained with bursts of 10 never stops the first.
	ClaimRateDefault  = 5.0
	ClaimBurstDefault = 10
	// ReadRateDefault and ReadBurstDefault: a map app refreshes nearby
	// hotspots, the wallet and the leaderboard every few seconds and a
	// screen change asks for a handful at once; a scraper asks thousands of
	// times a second. 20/s with bursts of 40 never stops the first.
	ReadRateDefault  = 20.0
	ReadBurstDefault = 40
	// LimitOff, as Config.ClaimRate or Config.ReadRate, turns that
	// per-player limit off.
	LimitOff = -1.0
	// Repeated refusals: a player's too_far and implausible_movement
	// refusals pass a bucket of refusalsBurst refilled at refusalsPerSecond;
	// those past it (the fourth within a few minutes) are counted in
	// cairn_repeated_refusals_total. A walker misjudging the radius is
	// refused once or twice; a spoofer or a bot, again and again.
	refusalsBurst     = 3
	refusalsPerSecond = 1.0 / 60
	// LimitKeysMaxDefault bounds the keys each in-process limiter tracks
	// (limit.KeysMaxDefault).
	LimitKeysMaxDefault = limit.KeysMaxDefault
	// xffHopsMax bounds the X-Forwarded-For entries examined, so a hostile
	// header costs a bounded walk.
	xffHopsMax = 32
	// limitRateMax is the highest rate a limit may be configured with (limit.RateMax).
	limitRateMax = limit.RateMax
)

// ErrRateLimited is the error of a request refused by a rate limit. Its
// answer is built in limit.go, not from the problem table, because its
// Retry-After is computed per answer (the time until the bucket has a token).
var ErrRateLimited = errors.New("rate limited")

// Limiter is what the server asks before a request (limit.Limiter): the
// in-process limit.Buckets, or one shared by every node plugged in as
// Config.PlayerLimiter.
type Limiter = limit.Limiter

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

// limitPlayer puts h behind the per-player limiter of writes (claims and
// spends).
func (s *Server) limitPlayer(h http.HandlerFunc) http.HandlerFunc {
	return s.limitPlayerWith(s.playerLimit, s.shedRateLimited, h)
}

// limitReads puts h behind the per-player limiter of reads.
func (s *Server) limitReads(h http.HandlerFunc) http.HandlerFunc {
	return s.limitPlayerWith(s.readLimit, s.shedReadLimited, h)
}

// limitPlayerWith puts h behind lim, keyed by the request's player (nil
// lim: no limit). A request without a token, or whose token does not
// verify, passes through: the handler answers its 401 (or, on the public
// leaderboard, answers it), and unauthenticated floods are the IP limit's
// business.
func (s *Server) limitPlayerWith(lim Limiter, shed interface{ Inc() }, h http.HandlerFunc) http.HandlerFunc {
	if lim == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		// The verified-token cache makes this, and the handler's own
		// authentication after it, a map lookup each.
		if r.Header.Get("Authorization") != "" {
			player, err := s.auth.player(r)
			if err == nil && !s.allow(w, r, lim, string(player), shed, "this player") {
				return
			}
		}
		h(w, r)
	}
}

// noteRefusal counts a too_far or implausible_movement refusal of player
// in cairn_repeated_refusals_total when the player had refusalsBurst of
// them shortly before (see refusalsBurst). Other outcomes are ignored.
func (s *Server) noteRefusal(player hunt.PlayerID, o hunt.Outcome) {
	var c prometheus.Counter
	switch o {
	case hunt.TooFar:
		c = s.repeatedTooFar
	case hunt.ImplausibleMovement:
		c = s.repeatedMovement
	default:
		return
	}
	if ok, _, _ := s.refusals.Allow(context.Background(), string(player)); !ok {
		c.Inc()
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
	s.countError(http.StatusTooManyRequests)
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
