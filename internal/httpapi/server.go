package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/leaderboard"
	"github.com/cairnhq/cairn/internal/limit"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Defaults and bounds of Config and of query parameters. Units are in the names.
const (
	BodyLenMaxDefault       = 1 << 20   // JSON bodies
	ImportBodyLenMaxDefault = 256 << 20 // the streamed hotspot import
	ImportTimeoutDefault    = 10 * time.Minute
	RequestTimeoutDefault   = 5 * time.Second
	AfterWaitMaxDefault     = 2 * time.Second
	SubscribersMaxDefault   = 10_000
	SubscriberLagMaxDefault = 1024 // SSE frames a subscriber may fall behind before it is dropped
	// StreamsPerPlayerMaxDefault: a player has a phone and maybe a
	// second screen; a few tabs more is still fine, ten thousand is not.
	StreamsPerPlayerMaxDefault = 4
	// StreamsPerAddressMaxDefault: players behind one NAT (a venue's
	// Wi-Fi) share an address, so this is looser than per player.
	StreamsPerAddressMaxDefault = 64
	// FeedRetainDefault: how long a hunt's ring of frames outlives its
	// last subscriber, so a client that reconnects within it misses nothing.
	FeedRetainDefault     = 2 * time.Minute
	HeartbeatEveryDefault = 15 * time.Second
	RegionLenMaxDefault   = geo.PrefixLenDefault
	ImportItemLenMax      = 64 << 10 // one import item: an NDJSON line or an array element
	// TokenTTLMaxDefault: the longest lifetime (exp - iat) of an accepted
	// player token. A stolen token is good until it expires (or is revoked),
	// so a 100-year token is refused; a month covers a long hunt.
	TokenTTLMaxDefault = 30 * 24 * time.Hour
	// RevocationRefreshDefault: a revocation reaches every node within this.
	RevocationRefreshDefault = 5 * time.Second
	LeaderboardLimitMax      = 1000
	LeaderboardLimitDefault  = 10
	LeaderboardOffsetMax     = 10_000_000
	NearbyRadiusMDefault     = 1000
	NearbyLimitDefault       = 50
	LedgerLimitDefault       = 50
	auditTimeout             = 10 * time.Minute
	sseWriteTimeout          = 30 * time.Second
	renderBufLen             = 512
)

// Board is what the API needs of the leaderboard projection;
// *leaderboard.Projection satisfies it. Calls may be concurrent.
type Board interface {
	// Top lists entries offset..offset+limit of a hunt's board (region "" is global).
	Top(h hunt.HuntID, region string, offset, limit int) leaderboard.Page
	// Around lists limit entries centred on player; false if the player is unranked.
	Around(h hunt.HuntID, region string, player hunt.PlayerID, limit int) (leaderboard.Page, bool)
	// Wait returns once the projection has applied epoch e, or ctx's error.
	Wait(ctx context.Context, e hunt.Epoch) error
	// Status reports the projection's watermark per partition.
	Status() []engine.Status
}

// Config configures a Server. Validate fills the defaults.
type Config struct {
	Engine engine.Engine
	Board  Board
	// Secret is the HS256 key of player tokens (CAIRN_SECRET), at least SecretLenMin bytes.
	Secret []byte
	// AdminToken is the bearer token of /v1/admin/* (CAIRN_ADMIN_TOKEN), at least AdminTokenLenMin bytes.
	AdminToken string
	// Issuer and Audience, when set, must be the tokens' iss and (one of) aud.
	Issuer, Audience string
	// TokenTTLMax refuses a player token whose lifetime (exp - iat; without
	// iat, exp - now) is longer (default TokenTTLMaxDefault).
	TokenTTLMax time.Duration
	// RevocationRefresh: how often a node rereads the token revocation list
	// from the engine, which bounds how long a revocation made on another
	// node takes to apply here (default RevocationRefreshDefault).
	RevocationRefresh time.Duration
	// BodyLenMax bounds JSON bodies; default 1 MiB.
	BodyLenMax int64
	// ImportBodyLenMax bounds the streamed hotspot import; default 256 MiB.
	ImportBodyLenMax int64
	// ImportTimeout bounds one hotspot import (reading and committing); default 10 min.
	ImportTimeout time.Duration
	// RequestTimeout is the deadline of every other non-streaming request; default 5 s.
	RequestTimeout time.Duration
	// AfterWaitMax bounds how long a read with after= waits; default 2 s.
	AfterWaitMax time.Duration
	// SubscribersMax bounds concurrent SSE subscribers (beyond: 503); default 10,000.
	SubscribersMax int
	// SubscriberLagMax is how many frames an SSE subscriber may fall behind
	// its hunt's feed; one further behind is disconnected. Each hunt with
	// subscribers keeps this many frames (~300 bytes each). Default 1024.
	SubscriberLagMax int
	// StreamsPerPlayerMax and StreamsPerAddressMax bound the open SSE
	// streams of one player and of one client address (IPv6: one /64; see
	// TrustedProxies); beyond: 429 too_many_streams. Defaults 4 and 64.
	StreamsPerPlayerMax, StreamsPerAddressMax int
	// FeedRetain is how long a hunt's frames are kept after its last
	// subscriber left, for resuming with Last-Event-ID; default 2 min.
	FeedRetain time.Duration
	// HeartbeatEvery is the interval of SSE heartbeat comments; default 15 s.
	HeartbeatEvery time.Duration
	// RegionLenMax is the longest leaderboard region (geohash prefix); default 4.
	RegionLenMax int
	// Clock is the time tokens are checked against; default time.Now.
	Clock func() time.Time
	// Logger receives unexpected errors and panics; default discards.
	Logger *slog.Logger
	// Metrics receives request latency, replays and shed counts; default telemetry.Discard().
	Metrics *telemetry.Metrics
	// Registry is served at /metrics; nil answers 404 there.
	Registry *prometheus.Registry
	// TracerProvider, if set, traces every request (a server span per route,
	// continuing an incoming traceparent; see trace.go); nil: tracing off.
	TracerProvider trace.TracerProvider
	// Audit, if set, answers GET /v1/admin/audit: 200 with the report when ok,
	// 409 invariant_violated with the report as the `report` member otherwise.
	Audit func(ctx context.Context) (report any, ok bool, err error)

	// ClaimRate is each player's sustained rate of writes per second (claims
	// and spends share one bucket), ClaimBurst how many may come at once.
	// 0 means ClaimRateDefault and ClaimBurstDefault: the limit is on unless
	// ClaimRate is LimitOff. Beyond it: 429 rate_limited with Retry-After.
	// The in-process buckets refill by the wall clock, not by Clock.
	ClaimRate  float64
	ClaimBurst int
	// PlayerLimiter, if set, replaces the in-process per-player buckets (for
	// one limiter shared by every node); ClaimRate and ClaimBurst are unused then.
	PlayerLimiter Limiter
	// ReadRate is each player's sustained rate of reads per second (GET of
	// hunts, nearby hotspots, the wallet, the ledger, the leaderboard when
	// a token is sent, opening a live feed), ReadBurst how many may come at
	// once; 0 means ReadRateDefault and ReadBurstDefault, LimitOff turns it
	// off. In-process buckets: per node. Beyond it: 429 rate_limited.
	ReadRate  float64
	ReadBurst int
	// IPRate and IPBurst limit each client address (IPv6: each /64) on every
	// route but /healthz and /readyz. IPRate 0 (the default) is off: per-IP
	// limits belong at the edge. IPBurst 0 means twice IPRate.
	IPRate  float64
	IPBurst int
	// TrustedProxies are the peers whose X-Forwarded-For the IP limit believes.
	TrustedProxies []netip.Prefix
	// LimitKeysMax bounds the keys each in-process limiter tracks; default LimitKeysMaxDefault.
	LimitKeysMax int
	// AdminSeparate serves the admin routes (/v1/admin/*) only from
	// AdminHandler, for a listener of their own; Handler answers them 404.
	AdminSeparate bool
}

// Validate fills the defaults and checks every field, joining every problem.
func (c *Config) Validate() error {
	c.BodyLenMax = cmp.Or(c.BodyLenMax, BodyLenMaxDefault)
	c.ImportBodyLenMax = cmp.Or(c.ImportBodyLenMax, ImportBodyLenMaxDefault)
	c.ImportTimeout = cmp.Or(c.ImportTimeout, ImportTimeoutDefault)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	c.TokenTTLMax = cmp.Or(c.TokenTTLMax, TokenTTLMaxDefault)
	c.RevocationRefresh = cmp.Or(c.RevocationRefresh, RevocationRefreshDefault)
	c.AfterWaitMax = cmp.Or(c.AfterWaitMax, AfterWaitMaxDefault)
	c.SubscribersMax = cmp.Or(c.SubscribersMax, SubscribersMaxDefault)
	c.SubscriberLagMax = cmp.Or(c.SubscriberLagMax, SubscriberLagMaxDefault)
	c.StreamsPerPlayerMax = cmp.Or(c.StreamsPerPlayerMax, StreamsPerPlayerMaxDefault)
	c.StreamsPerAddressMax = cmp.Or(c.StreamsPerAddressMax, StreamsPerAddressMaxDefault)
	c.FeedRetain = cmp.Or(c.FeedRetain, FeedRetainDefault)
	c.HeartbeatEvery = cmp.Or(c.HeartbeatEvery, HeartbeatEveryDefault)
	c.RegionLenMax = cmp.Or(c.RegionLenMax, RegionLenMaxDefault)
	c.ClaimRate = cmp.Or(c.ClaimRate, ClaimRateDefault)
	c.ClaimBurst = cmp.Or(c.ClaimBurst, ClaimBurstDefault)
	c.ReadRate = cmp.Or(c.ReadRate, ReadRateDefault)
	c.ReadBurst = cmp.Or(c.ReadBurst, ReadBurstDefault)
	if c.IPRate > 0 && c.IPRate <= limitRateMax && c.IPBurst == 0 {
		c.IPBurst = max(1, int(math.Ceil(2*c.IPRate)))
	}
	c.LimitKeysMax = cmp.Or(c.LimitKeysMax, LimitKeysMaxDefault)
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Discard()
	}
	var errs []error
	if c.Engine == nil {
		errs = append(errs, errors.New("httpapi: Engine is required"))
	}
	if c.Board == nil {
		errs = append(errs, errors.New("httpapi: Board is required"))
	}
	if c.TokenTTLMax < 0 {
		errs = append(errs, fmt.Errorf("httpapi: TokenTTLMax %v: want a positive duration", c.TokenTTLMax))
	}
	if len(c.Secret) < SecretLenMin {
		errs = append(errs, fmt.Errorf("httpapi: Secret is %d bytes; want at least %d", len(c.Secret), SecretLenMin))
	}
	if len(c.AdminToken) < AdminTokenLenMin || len(c.AdminToken) > TokenLenMax || !hunt.ValidKey(c.AdminToken[:min(len(c.AdminToken), hunt.KeyLenMax)]) {
		errs = append(errs, fmt.Errorf("httpapi: AdminToken must be %d-%d visible ASCII characters", AdminTokenLenMin, TokenLenMax))
	}
	for _, p := range []struct {
		name string
		bad  bool
	}{
		{"BodyLenMax", c.BodyLenMax < 0},
		{"ImportBodyLenMax", c.ImportBodyLenMax < 0},
		{"ImportTimeout", c.ImportTimeout < 0},
		{"RequestTimeout", c.RequestTimeout < 0},
		{"AfterWaitMax", c.AfterWaitMax < 0},
		{"SubscribersMax", c.SubscribersMax < 0},
		{"SubscriberLagMax", c.SubscriberLagMax < 0},
		{"StreamsPerPlayerMax", c.StreamsPerPlayerMax < 0},
		{"StreamsPerAddressMax", c.StreamsPerAddressMax < 0},
		{"FeedRetain", c.FeedRetain < 0},
		{"HeartbeatEvery", c.HeartbeatEvery < 0},
		{"RegionLenMax", c.RegionLenMax < 0 || c.RegionLenMax > geo.PrefixLenMax},
		{"ClaimRate", c.ClaimRate != LimitOff && !(c.ClaimRate > 0 && c.ClaimRate <= limitRateMax)},
		{"ClaimBurst", c.ClaimBurst < 1 || c.ClaimBurst > math.MaxInt32},
		{"ReadRate", c.ReadRate != LimitOff && !(c.ReadRate > 0 && c.ReadRate <= limitRateMax)},
		{"ReadBurst", c.ReadBurst < 1 || c.ReadBurst > math.MaxInt32},
		{"IPRate", !(c.IPRate >= 0 && c.IPRate <= limitRateMax)},
		{"IPBurst", c.IPBurst < 0 || c.IPBurst > math.MaxInt32},
		{"LimitKeysMax", c.LimitKeysMax < 0},
	} {
		if p.bad {
			errs = append(errs, fmt.Errorf("httpapi: %s is out of range", p.name))
		}
	}
	return errors.Join(errs...)
}

// Server serves API v1. It is safe for concurrent use.
type Server struct {
	cfg        Config
	eng        engine.Engine
	board      Board
	log        *slog.Logger
	auth       *authenticator
	feed       *hub
	handler    http.Handler
	admin      http.Handler // AdminSeparate: the admin routes; else nil
	partitions int

	// playerLimit, readLimit and ipLimit are nil when off (limit.go).
	playerLimit, readLimit, ipLimit                 Limiter
	shedRateLimited, shedReadLimited, shedIPLimited prometheus.Counter
	// refusals counts each player's too_far and implausible_movement
	// refusals (noteRefusal).
	refusals                         Limiter
	repeatedTooFar, repeatedMovement prometheus.Counter
	limitErrLog                      rate.Sometimes

	claimLatency, spendLatency prometheus.Observer
	// Refusals decided here; the engine counts its own (overloaded,
	// unavailable) and the replays, so they are not counted twice.
	shedTimeout, shedNotCaughtUp, shedSubscribers, shedStreams prometheus.Counter
	feedGaps                                                   prometheus.Counter
	// errorCount: cairn_http_errors_total by status (errorCounters).
	errorCount map[int]prometheus.Counter
	// tracer is nil when tracing is off (Config.TracerProvider unset).
	tracer trace.Tracer

	// bufs recycles request and answer buffers of the claim and spend paths.
	bufs sync.Pool
}

// New validates cfg and builds the server and its routes.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := cfg.Metrics
	s := &Server{
		cfg:   cfg,
		eng:   cfg.Engine,
		board: cfg.Board,
		log:   cfg.Logger,
		auth:  newAuthenticator(cfg.Secret, cfg.AdminToken, cfg.Issuer, cfg.Audience, cfg.Clock).withTTLMax(cfg.TokenTTLMax),
		feed: newHub(hubConfig{subscribersMax: cfg.SubscribersMax, lagMax: cfg.SubscriberLagMax,
			perPlayerMax: cfg.StreamsPerPlayerMax, perAddrMax: cfg.StreamsPerAddressMax,
			retain: cfg.FeedRetain, now: cfg.Clock, secret: cfg.Secret}),
		partitions:       cfg.Engine.Partitions(),
		claimLatency:     m.ClaimLatency(),
		spendLatency:     m.SpendLatency(),
		shedTimeout:      m.Shed.WithLabelValues("timeout"),
		shedNotCaughtUp:  m.Shed.WithLabelValues("not_caught_up"),
		shedSubscribers:  m.Shed.WithLabelValues("too_many_subscribers"),
		shedStreams:      m.Shed.WithLabelValues("too_many_streams"),
		feedGaps:         m.FeedGaps,
		shedRateLimited:  m.Shed.WithLabelValues("rate_limited"),
		shedIPLimited:    m.Shed.WithLabelValues("ip_rate_limited"),
		shedReadLimited:  m.Shed.WithLabelValues("read_rate_limited"),
		repeatedTooFar:   m.RepeatedRefusals.WithLabelValues(hunt.TooFar.String()),
		repeatedMovement: m.RepeatedRefusals.WithLabelValues(hunt.ImplausibleMovement.String()),
		limitErrLog:      rate.Sometimes{Interval: 10 * time.Second},
		errorCount:       errorCounters(m.HTTPErrors),
		tracer:           telemetry.Tracer(cfg.TracerProvider),
	}
	if err := s.newLimiters(); err != nil {
		return nil, err
	}
	s.auth.revoked = &revocations{eng: cfg.Engine, every: cfg.RevocationRefresh, now: cfg.Clock}
	s.bufs.New = func() any { b := make([]byte, 0, renderBufLen); return &b }
	if cfg.AdminSeparate {
		s.handler = s.routes(func(path string) bool { return !isAdminPath(path) && !isOperatorPath(path) })
		s.admin = s.routes(func(path string) bool { return isAdminPath(path) || isOperatorPath(path) || isProbePath(path) })
	} else {
		s.handler = s.routes(func(string) bool { return true })
	}
	return s, nil
}

// newLimiters builds the configured limiters (limit.go).
func (s *Server) newLimiters() error {
	c := &s.cfg
	switch {
	case c.PlayerLimiter != nil:
		s.playerLimit = c.PlayerLimiter
	case c.ClaimRate != LimitOff:
		b, err := limit.NewBuckets(limit.BucketsConfig{Rate: c.ClaimRate, Burst: c.ClaimBurst, KeysMax: c.LimitKeysMax})
		if err != nil {
			return err
		}
		s.playerLimit = b
	}
	if c.ReadRate != LimitOff {
		b, err := limit.NewBuckets(limit.BucketsConfig{Rate: c.ReadRate, Burst: c.ReadBurst, KeysMax: c.LimitKeysMax})
		if err != nil {
			return err
		}
		s.readLimit = b
	}
	b, err := limit.NewBuckets(limit.BucketsConfig{Rate: refusalsPerSecond, Burst: refusalsBurst, KeysMax: c.LimitKeysMax})
	if err != nil {
		return err
	}
	s.refusals = b
	if c.IPRate > 0 {
		b, err := limit.NewBuckets(limit.BucketsConfig{Rate: c.IPRate, Burst: c.IPBurst, KeysMax: c.LimitKeysMax})
		if err != nil {
			return err
		}
		s.ipLimit = b
	}
	return nil
}

func isAdminPath(path string) bool { return strings.HasPrefix(path, "/v1/admin/") }

// isOperatorPath: the unauthenticated routes for operators only, which show
// the node's internals (every metric, each partition's epoch and depth);
// with AdminSeparate only the admin listener serves them.
func isOperatorPath(path string) bool { return path == "/metrics" || path == "/v1/consistency" }

// isProbePath: the probes, which both listeners serve.
func isProbePath(path string) bool { return path == "/healthz" || path == "/readyz" }

// Handler returns the handler of every route (when Config.AdminSeparate is
// set, every route but the admin ones, /metrics and /v1/consistency).
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler returns the handler of the admin routes, /metrics,
// /v1/consistency and the probes (/healthz, /readyz) when
// Config.AdminSeparate is set, for a listener of its own; nil otherwise.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Feed returns the SSE hub, to Subscribe on the engine before it runs.
func (s *Server) Feed() engine.Sink { return s.feed }

// EndStreams ends every open SSE stream and refuses new ones. Call it from
// http.Server.RegisterOnShutdown: Shutdown waits for active requests, and an
// event stream never ends by itself. Other requests are unaffected.
func (s *Server) EndStreams() { s.feed.close() }

// NewHTTPServer returns an http.Server for h with Cairn's timeouts: a slow
// or stuck client is cut off, never kept forever. Handlers that run longer
// (SSE, the hotspot import) extend their own deadlines with
// http.ResponseController.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// route is one entry of the routing table; long marks handlers that set
// their own deadline (streams, the import, the audit) instead of RequestTimeout.
type route struct {
	method, path string
	h            http.HandlerFunc
	long         bool
}

// routes builds the handler of the routes whose path keep accepts.
func (s *Server) routes(keep func(path string) bool) http.Handler {
	table := []route{
		{"PUT", "/v1/admin/hunts/{hunt}", s.putHunt, false},
		{"GET", "/v1/admin/hunts/{hunt}", s.adminGetHunt, false},
		{"GET", "/v1/admin/hunts", s.adminListHunts, false},
		{"POST", "/v1/admin/hunts/{hunt}/hotspots", s.importHotspots, true},
		{"GET", "/v1/admin/audit", s.audit, true},
		{"POST", "/v1/admin/players/{player}/revoke-tokens", s.revokeTokens, false},
		{"POST", "/v1/admin/snapshot", s.snapshot, true},
		{"GET", "/v1/hunts/{hunt}", s.limitReads(s.getHunt), false},
		{"GET", "/v1/hunts/{hunt}/hotspots", s.limitReads(s.nearby), false},
		{"POST", "/v1/hunts/{hunt}/hotspots/{id}/claim", s.limitPlayer(s.claim), false},
		{"GET", "/v1/hunts/{hunt}/leaderboard", s.limitReads(s.leaderboard), false},
		{"GET", "/v1/hunts/{hunt}/events", s.limitReads(s.events), true},
		{"GET", "/v1/wallet", s.limitReads(s.wallet), false},
		{"GET", "/v1/wallet/ledger", s.limitReads(s.ledger), false},
		{"POST", "/v1/wallet/spend", s.limitPlayer(s.spend), false},
		{"GET", "/v1/consistency", s.consistency, false},
		{"GET", "/metrics", s.metrics(), false},
		{"GET", "/healthz", s.healthz, false},
		{"GET", "/readyz", s.readyz, false},
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range table {
		if !keep(rt.path) {
			continue
		}
		h := rt.h
		if !rt.long {
			h = s.withDeadline(s.cfg.RequestTimeout, h)
		}
		if s.tracer != nil {
			h = s.traced(rt.method, rt.path, h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// ServeMux answers unmatched requests in text/plain; the API answers every
	// error as problem+json. A method-less pattern per path is less specific
	// than the method patterns, so it only catches the other methods (405),
	// and "/" catches every unknown path (404). No per-request wrapping needed.
	for path, methods := range allowed {
		if contains(methods, "GET") {
			methods = append(methods, "HEAD")
		}
		sort.Strings(methods)
		allow := []string{strings.Join(methods, ", ")}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Allow"] = allow
			s.writeError(w, r, fmt.Errorf("%w: %s %s (allowed: %s)", errMethodNotAllowed, r.Method, path, allow[0]), nil)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: %s", errNotFound, r.URL.Path), nil)
	})
	h := s.limitIP(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverPanic(w, r)
		h.ServeHTTP(w, r)
	})
}

func contains(ss []string, s string) bool {
	for _, v := range ss {
		if v == s {
			return true
		}
	}
	return false
}

// withDeadline puts the request under a deadline. The connection's read
// deadline moves to the same instant: a context does not interrupt a body
// read, so without it a client trickling its body would hold the handler
// until the server's ReadTimeout. (net/http resets the read deadline for
// the connection's next request.)
func (s *Server) withDeadline(d time.Duration, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		deadline := time.Now().Add(d)
		ctx, cancel := context.WithDeadline(r.Context(), deadline)
		defer cancel()
		_ = http.NewResponseController(w).SetReadDeadline(deadline)
		h(w, r.WithContext(ctx))
	}
}

// recoverPanic turns a handler panic into a logged 500. None should happen;
// this keeps one bug from taking the connection's other requests with it.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler { // net/http's own way to abort a response: let it through
		panic(v)
	}
	s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
	// If the handler already wrote its header this second header is ignored
	// by net/http (and logged by it); the client sees a truncated answer.
	s.countError(problemInternal.status)
	writeProblem(w, problemInternal, "internal error; the server log has the details", nil)
}

// buf borrows a buffer from the pool; put returns it.
func (s *Server) buf() *[]byte { return s.bufs.Get().(*[]byte) }

func (s *Server) put(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // do not keep a buffer a large body grew
	}
	*b = (*b)[:0]
	s.bufs.Put(b)
}

// writeJSON answers v as JSON with status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encoding the answer: %w", err), nil)
		return
	}
	h := w.Header()
	h["Content-Type"] = ctJSON
	h["Cache-Control"] = hdrNoStore
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// pathID returns a path value as an id, or false when it cannot be a valid id.
func pathID(r *http.Request, name string) (string, bool) {
	v := r.PathValue(name)
	return v, hunt.ValidID(v)
}
