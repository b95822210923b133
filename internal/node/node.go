// Package node assembles a Cairn node: one engine, its leaderboard
// projection, its SSE feed and its HTTP API, built from one Config by New and
// run with one Run(ctx). `cairn serve` and the in-process tests build the
// stack through it, so they build it the same way.
//
// New subscribes the projection, the feed and the ops console (package ops,
// served at /ops/ on the admin listener when there is one, else with the
// API) to the engine, rebuilds the projection from the log and builds the API; when Config.Addr is set it
// then listens (after the rebuild, so nothing connects to a node that cannot
// answer yet). Run runs the engine and the projection, and the HTTP servers
// when New listened, with three lifetimes stopped in order: HTTP first
// (requests in flight finish, SSE streams end), then the engine drains its
// inboxes, then the projection applies what the engine delivered and stops.
//
// The caller opens the engine and closes it after Run returned (or after New
// failed). Run may be called once.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/leaderboard"
	"github.com/cairnhq/cairn/internal/ops"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// ShutdownGraceMaxDefault bounds how long a stopping node waits for requests in flight.
const ShutdownGraceMaxDefault = 10 * time.Second

var (
	// ErrEngineStopped: the engine's Run returned while the node was serving
	// and nobody asked it to stop.
	ErrEngineStopped = errors.New("node: engine stopped")
	// ErrAlreadyRun: Run was called a second time.
	ErrAlreadyRun = errors.New("node: Run called twice")
)

// Config configures a Node.
type Config struct {
	// Engine is an opened engine; required. The caller closes it after Run returned.
	Engine engine.Engine
	// API configures the HTTP API: secrets, limits, timeouts. New sets its
	// Engine, Board, Logger, Metrics and Registry from this Config, and its
	// AdminSeparate when AdminAddr is set; Audit, when nil, becomes
	// audit.Check over the engine and the projection.
	API httpapi.Config
	// Board configures the projection; New sets its Partitions (the
	// engine's), Logger and Metrics.
	Board leaderboard.Options
	// Logger receives the node's own messages and is passed on; default discards.
	Logger *slog.Logger
	// Metrics is passed to the projection and the API; default telemetry.Discard().
	Metrics *telemetry.Metrics
	// Registry is served at /metrics; nil answers 404 there.
	Registry *prometheus.Registry
	// Addr, if set, is where New listens and Run serves the API (":0" picks a port; see Addr).
	Addr string
	// AdminAddr, if set, serves /v1/admin/* (and the probes) on its own
	// listener, not on Addr. Needs Addr.
	AdminAddr string
	// ShutdownGraceMax bounds how long Run waits for requests in flight
	// once asked to stop; default ShutdownGraceMaxDefault.
	ShutdownGraceMax time.Duration
	// Started, if set, is called by Run once the engine and the projection
	// run, before the HTTP servers accept requests (a demo hunt, a banner).
	// An error stops the node and is returned by Run.
	Started func(ctx context.Context) error
}

// Node is an assembled Cairn node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	eng     engine.Engine
	board   *leaderboard.Projection
	api     *httpapi.Server
	console *ops.Ops
	ln      net.Listener // nil: Run serves no HTTP
	adminLn net.Listener
	ran     atomic.Bool
}

// New builds a node over cfg.Engine: the projection and the API, both
// subscribed to the engine, the projection rebuilt from the log; then, if
// cfg.Addr is set, the listeners.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Engine == nil {
		return nil, errors.New("node: Config.Engine is required")
	}
	if cfg.AdminAddr != "" && cfg.Addr == "" {
		return nil, errors.New("node: Config.AdminAddr needs Config.Addr")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = telemetry.Discard()
	}
	if cfg.ShutdownGraceMax <= 0 {
		cfg.ShutdownGraceMax = ShutdownGraceMaxDefault
	}
	eng, log := cfg.Engine, cfg.Logger

	ac := cfg.API
	ac.Logger, ac.Metrics, ac.Registry = log, cfg.Metrics, cfg.Registry
	ac.AdminSeparate = ac.AdminSeparate || cfg.AdminAddr != ""
	bo := cfg.Board
	bo.Logger, bo.Metrics = log, cfg.Metrics
	var board *leaderboard.Projection
	if ac.Audit == nil {
		ac.Audit = func(ctx context.Context) (any, bool, error) {
			r, err := audit.Check(ctx, eng, board)
			return r, r.OK, err
		}
	}
	start := time.Now()
	board, api, err := httpapi.Assemble(ctx, eng, bo, ac)
	if err != nil {
		return nil, err
	}
	log.Info("leaderboard rebuilt from the log", "took", time.Since(start).Round(time.Millisecond))
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(api.LagCollector()); err != nil {
			return nil, fmt.Errorf("node: registering the partition lag gauges: %w", err)
		}
	}

	console, err := ops.New(ops.Config{Engine: eng, Board: board, API: api, Metrics: cfg.Metrics, Logger: log})
	if err != nil {
		return nil, err
	}
	eng.Subscribe(console)

	n := &Node{cfg: cfg, log: log, eng: eng, board: board, api: api, console: console}
	if cfg.Addr != "" {
		if n.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, err
		}
	}
	if cfg.AdminAddr != "" {
		if n.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			n.ln.Close()
			return nil, err
		}
		log.Info("admin routes served on their own listener", "admin_addr", n.adminLn.Addr().String())
	}
	return n, nil
}

// Addr is the address the API listens on (Config.Addr with the port chosen), nil without Config.Addr.
func (n *Node) Addr() net.Addr { return addrOf(n.ln) }

// AdminAddr is the admin listener's address, nil without Config.AdminAddr.
func (n *Node) AdminAddr() net.Addr { return addrOf(n.adminLn) }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Engine is the node's engine.
func (n *Node) Engine() engine.Engine { return n.eng }

// Board is the node's leaderboard projection.
func (n *Node) Board() *leaderboard.Projection { return n.board }

// Console is the node's ops console; Handler serves it (see package ops).
func (n *Node) Console() *ops.Ops { return n.console }

// ConsolePath is where the ops console is served, on the admin listener
// when there is one, else on the API's.
const ConsolePath = "/ops/"

// API is the node's HTTP API, for callers that serve it themselves (without
// Config.Addr): serve API().Handler() and call API().EndStreams() before
// closing the server, as SSE streams never end by themselves.
func (n *Node) API() *httpapi.Server { return n.api }

// Run runs the engine and the projection, and serves HTTP if New listened,
// until ctx is done or the engine stops by itself (a failed commit); then
// it stops HTTP, the engine and the projection, in that order, and returns
// what went wrong (nil after a clean stop).
func (n *Node) Run(ctx context.Context) error {
	if !n.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	// Three lifetimes: HTTP stops first (requests in flight finish), then the
	// engine drains its inboxes, then the projection stops.
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	boardCtx, stopBoard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	defer stopBoard()
	engDone := make(chan error, 1)
	boardDone := make(chan error, 1)
	go func() { boardDone <- n.board.Run(boardCtx) }()
	consoleCtx, stopConsole := context.WithCancel(context.WithoutCancel(ctx))
	consoleDone := make(chan error, 1)
	go func() { consoleDone <- n.console.Run(consoleCtx) }()
	go func() { engDone <- n.eng.Run(engCtx) }()

	var startErr, httpErr error
	if n.cfg.Started != nil {
		startErr = n.cfg.Started(ctx)
	}
	if startErr != nil {
		n.closeListeners()
	} else {
		httpErr = n.serve(ctx, engDone)
	}

	stopConsole()
	<-consoleDone // only ever ctx's error
	stopEngine()
	engErr := <-engDone
	stopBoard()
	boardErr := <-boardDone
	if errors.Is(boardErr, context.Canceled) {
		boardErr = nil
	}
	if errors.Is(engErr, context.Canceled) {
		engErr = nil
	}
	if engErr != nil {
		engErr = fmt.Errorf("engine: %w", engErr)
	}
	// The engine's own error says more than ErrEngineStopped; and an engine
	// that stopped while the node was asked to stop is no failure.
	if errors.Is(httpErr, ErrEngineStopped) && (engErr != nil || ctx.Err() != nil) {
		httpErr = nil
	}
	return errors.Join(startErr, httpErr, engErr, boardErr)
}

// serve serves HTTP on the node's listeners (if any) until ctx is done or
// the engine stops, then shuts the servers down. An engine error read from
// engDone is put back for Run.
func (n *Node) serve(ctx context.Context, engDone chan error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case err := <-engDone:
			engDone <- err
			return ErrEngineStopped
		case <-gctx.Done():
			return nil
		}
	})
	if n.ln != nil {
		h := n.api.Handler()
		if n.adminLn == nil {
			h = withConsole(h, n.console.Handler())
		}
		n.serveOn(g, gctx, n.ln, h)
	}
	if n.adminLn != nil {
		n.serveOn(g, gctx, n.adminLn, withConsole(n.api.AdminHandler(), n.console.Handler()))
	}
	return g.Wait()
}

func (n *Node) serveOn(g *errgroup.Group, gctx context.Context, ln net.Listener, h http.Handler) {
	srv := httpapi.NewHTTPServer(ln.Addr().String(), h)
	srv.RegisterOnShutdown(n.api.EndStreams) // SSE streams never end by themselves
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		n.log.Info("shutting down: finishing requests in flight", "addr", ln.Addr().String())
		sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownGraceMax)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}

// withConsole serves the ops console at ConsolePath (and /ops) and api elsewhere.
func withConsole(api, console http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(ConsolePath, console)
	mux.Handle("/ops", console)
	mux.Handle("/", api)
	return mux
}

func (n *Node) closeListeners() {
	for _, ln := range []net.Listener{n.ln, n.adminLn} {
		if ln != nil {
			ln.Close()
		}
	}
}
