package ops

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/leaderboard"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Defaults and bounds of Config. Units are in the names.
const (
	IdleAfterDefault      = 30 * time.Second
	IndexMaxAgeDefault    = 5 * time.Minute
	CellsMaxDefault       = 20_000
	PointsMaxDefault      = engine.NearbyLimitMax
	CellPxMinDefault      = 10
	RingLenDefault        = 1 << 16
	StatsSecondsDefault   = 600
	RequestTimeoutDefault = 5 * time.Second
	IndexCellsMaxDefault  = 1 << 20
	ClaimsPageMax         = 500
	LeaderboardLimitMax   = 100
	CanvasPxMax           = 10_000
	indexWaitMax          = 2 * time.Second // a map request waits this long for a build before answering "building"
)

// Engine is what the console reads of an engine; engine.Engine satisfies it.
type Engine interface {
	Hunt(ctx context.Context, id hunt.HuntID) (hunt.Hunt, error)
	Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error
	Nearby(ctx context.Context, id hunt.HuntID, lat, lon, radiusM float64, limit int) ([]hunt.HotspotView, error)
	Status() []engine.Status
}

// Board is what the console reads of the leaderboard projection;
// *leaderboard.Projection satisfies it.
type Board interface {
	Top(h hunt.HuntID, region string, offset, limit int) leaderboard.Page
	Status() []engine.Status
}

// API is what the console borrows from the HTTP API (*httpapi.Server): the
// admin token check and the one table from errors to problem answers.
type API interface {
	AuthorizeAdmin(r *http.Request) error
	WriteError(w http.ResponseWriter, r *http.Request, err error)
}

// Config configures an Ops. Zero values take the defaults.
type Config struct {
	Engine  Engine             // required
	Board   Board              // required
	API     API                // required
	Metrics *telemetry.Metrics // the node's metrics, sampled once a second; default telemetry.Discard()
	Logger  *slog.Logger       // default discards
	Clock   func() time.Time   // default time.Now

	// IdleAfter: the sink records claims only while a console has asked for
	// something within this long; default 30 s.
	IdleAfter time.Duration
	// IndexMaxAge: a hunt's cell index older than this is rebuilt on the next
	// map request (imports add hotspots the index does not follow); default 5 min.
	IndexMaxAge time.Duration
	// CellsMax bounds the cells of one map answer; default 20,000.
	CellsMax int
	// PointsMax: a box with at most this many hotspots is answered hotspot by
	// hotspot; default engine.NearbyLimitMax (1000), its upper bound.
	PointsMax int
	// CellPxMin is the smallest cell drawn, in canvas pixels; default 10.
	CellPxMin int
	// RingLen is how many recent claim decisions the console keeps; default 65,536.
	RingLen int
	// StatsSeconds is how many per-second samples are kept; default 600 (10 min).
	StatsSeconds int
	// IndexCellsMax bounds the cells of one level of a hunt's index; a finer
	// level that would hold more is not kept. Default 1,048,576.
	IndexCellsMax int
	// RequestTimeout is the deadline of every /ops/api request; default 5 s.
	RequestTimeout time.Duration
}

// Validate fills the defaults and reports every problem, joined.
func (c *Config) Validate() error {
	c.IdleAfter = cmp.Or(c.IdleAfter, IdleAfterDefault)
	c.IndexMaxAge = cmp.Or(c.IndexMaxAge, IndexMaxAgeDefault)
	c.CellsMax = cmp.Or(c.CellsMax, CellsMaxDefault)
	c.PointsMax = cmp.Or(c.PointsMax, PointsMaxDefault)
	c.CellPxMin = cmp.Or(c.CellPxMin, CellPxMinDefault)
	c.RingLen = cmp.Or(c.RingLen, RingLenDefault)
	c.StatsSeconds = cmp.Or(c.StatsSeconds, StatsSecondsDefault)
	c.IndexCellsMax = cmp.Or(c.IndexCellsMax, IndexCellsMaxDefault)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	if c.Metrics == nil {
		c.Metrics = telemetry.Discard()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	var errs []error
	if c.Engine == nil {
		errs = append(errs, errors.New("ops: Engine is required"))
	}
	if c.Board == nil {
		errs = append(errs, errors.New("ops: Board is required"))
	}
	if c.API == nil {
		errs = append(errs, errors.New("ops: API is required"))
	}
	for _, p := range []struct {
		name string
		bad  bool
	}{
		{"IdleAfter", c.IdleAfter < 0},
		{"IndexMaxAge", c.IndexMaxAge < 0},
		{"CellsMax", c.CellsMax < 1},
		{"PointsMax", c.PointsMax < 0 || c.PointsMax > engine.NearbyLimitMax},
		{"CellPxMin", c.CellPxMin < 1},
		{"RingLen", c.RingLen < 1},
		{"StatsSeconds", c.StatsSeconds < 1},
		{"IndexCellsMax", c.IndexCellsMax < 1},
		{"RequestTimeout", c.RequestTimeout < 0},
	} {
		if p.bad {
			errs = append(errs, fmt.Errorf("ops: %s is out of range", p.name))
		}
	}
	return errors.Join(errs...)
}

//go:embed assets
var assets embed.FS

// Ops is the console: its handler, its sink and its sampler.
type Ops struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler

	// lastSeen is the unix nanoseconds of the last /ops/api request; active
	// says the sink records (set by a request, cleared by Run after IdleAfter).
	lastSeen atomic.Int64
	active   atomic.Bool

	ring  *ring
	stats *sampler

	mu struct {
		sync.Mutex
		indexes map[hunt.HuntID]*index
		runCtx  context.Context // nil until Run: builds need Run's lifetime
		builds  sync.WaitGroup
	}
}

// New validates cfg and builds the console.
func New(cfg Config) (*Ops, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &Ops{cfg: cfg, log: cfg.Logger, ring: newRing(cfg.RingLen), stats: newSampler(cfg.Metrics, cfg.StatsSeconds)}
	o.mu.indexes = map[hunt.HuntID]*index{}
	o.handler = o.routes()
	return o, nil
}

// Handler serves /ops/ (the page) and /ops/api/ (its JSON). Mount it at /ops/.
func (o *Ops) Handler() http.Handler { return o.handler }

// Committed is the console's engine.Sink: while a console watches, it copies
// every claim decision into the ring; otherwise it returns at once.
func (o *Ops) Committed(_ geo.Partition, batch []hunt.Event) {
	if !o.active.Load() {
		return
	}
	o.ring.add(batch)
}

// Run samples the metrics once a second, notices when no console watches any
// more, and owns the index builds, until ctx is done.
func (o *Ops) Run(ctx context.Context) error {
	o.mu.Lock()
	o.mu.runCtx = ctx
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.mu.runCtx = nil
		o.mu.Unlock()
		o.mu.builds.Wait()
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now := o.cfg.Clock()
		o.stats.sample(now)
		if o.active.Load() && now.Sub(time.Unix(0, o.lastSeen.Load())) > o.cfg.IdleAfter {
			o.sleep()
		}
	}
}

// touch marks a console as watching. The first request after an idle spell
// starts the sink recording; indexes were dropped when it went idle, as they
// missed the grants meanwhile.
func (o *Ops) touch() {
	o.lastSeen.Store(o.cfg.Clock().UnixNano())
	if !o.active.Load() {
		o.active.Store(true)
	}
}

// sleep stops the sink recording and drops the indexes (they would miss grants).
func (o *Ops) sleep() {
	o.active.Store(false)
	o.mu.Lock()
	clear(o.mu.indexes)
	o.mu.Unlock()
	o.log.Debug("ops console idle: claims no longer recorded")
}

// routes builds the console's handler.
func (o *Ops) routes() http.Handler {
	mux := http.NewServeMux()
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic("ops: embedded assets missing: " + err.Error()) // a build error, not an operating one
	}
	files := http.StripPrefix("/ops/", http.FileServerFS(static))
	mux.Handle("GET /ops/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /ops", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ops/", http.StatusMovedPermanently)
	})
	api := []struct {
		pattern string
		h       func(w http.ResponseWriter, r *http.Request) error
	}{
		{"GET /ops/api/hunts/{hunt}/map", o.serveMap},
		{"GET /ops/api/hunts/{hunt}/claims", o.serveClaims},
		{"GET /ops/api/hunts/{hunt}/leaderboard", o.serveLeaderboard},
		{"GET /ops/api/stats", o.serveStats},
		{"GET /ops/api/consistency", o.serveConsistency},
	}
	for _, a := range api {
		mux.HandleFunc(a.pattern, o.apiHandler(a.h))
	}
	mux.HandleFunc("GET /ops/api/", o.apiHandler(func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%w: %s", errNotFound, r.URL.Path)
	}))
	// Everything of the console is read with GET (writes go to /v1/admin/*).
	mux.HandleFunc("/ops/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the ops console answers GET only", http.StatusMethodNotAllowed)
	})
	return mux
}

// errNotFound is an unknown console route (404 in the API's table).
var errNotFound = httpapi.ErrNotFound

// apiHandler authenticates, puts the request under RequestTimeout, marks the
// console as watching, and answers the handler's error through the API's table.
func (o *Ops) apiHandler(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := o.cfg.API.AuthorizeAdmin(r); err != nil {
			o.cfg.API.WriteError(w, r, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), o.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		o.touch()
		if err := h(w, r); err != nil {
			o.cfg.API.WriteError(w, r, err)
		}
	}
}
