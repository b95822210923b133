package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/redis"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/leaderboard"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// shutdownGraceMax bounds how long a stopping server waits for requests in flight.
const shutdownGraceMax = 10 * time.Second

type serveFlags struct {
	addr       string
	data       string
	store      string
	partitions int
	demo       bool
	logLevel   string

	pprofAddr     string
	gcPercent     int
	memLimitMiB   int64
	redisPool     int
	redisMode     string
	allowVolatile bool

	// Abuse limits and the admin listener (httpapi.Config).
	claimRate      float64
	claimBurst     int
	ipRate         float64
	ipBurst        int
	trustedProxies prefixList
	adminAddr      string
	// faultHook is the test-only embedded FaultHook (faulthook.go); nil in production.
	faultHook func(point string) error

	diskFreeMinMiB int64
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", envOr("CAIRN_ADDR", "127.0.0.1:8080"), "listen address (env CAIRN_ADDR)")
	fs.StringVar(&f.data, "data", envOr("CAIRN_DATA", "./cairn-data"), "data directory: the embedded store and generated secrets (env CAIRN_DATA)")
	fs.StringVar(&f.store, "store", envOr("CAIRN_STORE", "embedded"), "embedded, or redis://host:port/db (env CAIRN_STORE)")
	fs.IntVar(&f.partitions, "partitions", 0, "log partitions, fixed when a store is created (0: 64, or what an existing embedded store has)")
	fs.BoolVar(&f.demo, "demo", false, "create a demo hunt around Paris and print how to claim a ticket")
	fs.Int64Var(&f.diskFreeMinMiB, "disk-free-min-mib", 256, "embedded: refuse writes (503) while the store's disk has less free space than this, in MiB; -1 = never")
	fs.IntVar(&f.gcPercent, "gc-percent", -1, "Go GC target percent (-1: GOGC if set, else 400; a soft memory limit keeps it safe)")
	fs.Int64Var(&f.memLimitMiB, "memory-limit-mib", -1, "Go soft memory limit in MiB (-1: GOMEMLIMIT if set, else 75% of the cgroup's or the machine's memory; 0 = none)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof on this (loopback) address; off when empty")
	fs.IntVar(&f.redisPool, "redis-pool-size", 0, "Redis: connections for commands (0 = 10 per CPU)")
	fs.StringVar(&f.redisMode, "redis-mode", "direct", "Redis: direct (the receiving node calls the Function) or stream (queue on the partition's request stream)")
	fs.BoolVar(&f.allowVolatile, "allow-volatile-redis", false, "Redis: serve even if Redis may lose acknowledged writes (no AOF or appendfsync not always)")
	fs.StringVar(&f.logLevel, "log-level", envOr("CAIRN_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.Float64Var(&f.claimRate, "claim-rate", httpapi.ClaimRateDefault, "claims and spends per second per player, sustained (0 = no limit)")
	fs.IntVar(&f.claimBurst, "claim-burst", httpapi.ClaimBurstDefault, "claims and spends per player at once (token bucket size)")
	fs.Float64Var(&f.ipRate, "ip-rate", 0, "requests per second per client address (IPv6: per /64); 0 = off, as per-IP limits belong at the edge")
	fs.IntVar(&f.ipBurst, "ip-burst", 0, "requests per client address at once (0 = twice --ip-rate)")
	fs.Var(&f.trustedProxies, "trusted-proxy", "CIDR of a proxy whose X-Forwarded-For the per-IP limit believes (repeatable, or comma-separated)")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "serve /v1/admin/* (and the probes) on this address only, not on --addr; empty = together")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	hook, err := testFaultHook(os.Getenv, f.store, log)
	if err != nil {
		return err
	}
	f.faultHook = hook
	pol, err := applyMemoryPolicy(f.gcPercent, f.memLimitMiB, os.Getenv, cgroupMemoryMax, machineMemory)
	if err != nil {
		return err
	}
	log.Info("memory policy", "gc_percent", pol.GCPercent, "memory_limit_bytes", pol.LimitBytes, "memory_limit_from", pol.LimitSource)
	claimRate := f.claimRate
	if claimRate == 0 {
		claimRate = httpapi.LimitOff
	}

	secret, adminToken, created, err := ensureSecrets(f.data)
	if err != nil {
		return err
	}
	if created {
		log.Info("generated CAIRN_SECRET and CAIRN_ADMIN_TOKEN", "file", filepath.Join(f.data, secretsFile))
	}

	reg := prometheus.NewRegistry()
	metrics := telemetry.New(reg)
	eng, err := openEngine(ctx, f, log, metrics)
	if err != nil {
		return err
	}
	defer eng.Close()

	board, err := leaderboard.New(leaderboard.Options{Partitions: eng.Partitions(), Metrics: metrics, Logger: log})
	if err != nil {
		return err
	}
	eng.Subscribe(board)
	// On Redis the per-player limit is one bucket shared by every node.
	var playerLimiter httpapi.Limiter
	if re, ok := eng.(*redis.Engine); ok && claimRate != httpapi.LimitOff {
		burst := f.claimBurst
		if burst == 0 {
			burst = httpapi.ClaimBurstDefault
		}
		if playerLimiter, err = re.NewLimiter(claimRate, burst); err != nil {
			return fmt.Errorf("--claim-rate/--claim-burst: %w", err)
		}
	}
	srv, err := httpapi.New(httpapi.Config{
		Engine: eng, Board: board, Secret: secret, AdminToken: adminToken,
		Logger: log, Metrics: metrics, Registry: reg, PlayerLimiter: playerLimiter,
		ClaimRate: claimRate, ClaimBurst: f.claimBurst, IPRate: f.ipRate, IPBurst: f.ipBurst,
		TrustedProxies: f.trustedProxies, AdminSeparate: f.adminAddr != "",
		Audit: func(ctx context.Context) (any, bool, error) {
			r, err := audit.Check(ctx, eng, board)
			return r, r.OK, err
		},
	})
	if err != nil {
		return err
	}
	eng.Subscribe(srv.Feed())

	start := time.Now()
	if err := board.Rebuild(ctx, eng); err != nil {
		return fmt.Errorf("rebuilding the leaderboard: %w", err)
	}
	log.Info("leaderboard rebuilt from the log", "took", time.Since(start).Round(time.Millisecond))

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	httpSrv := httpapi.NewHTTPServer(f.addr, srv.Handler())
	httpSrv.RegisterOnShutdown(srv.EndStreams) // SSE streams never end by themselves
	type served struct {
		srv *http.Server
		ln  net.Listener
	}
	servers := []served{{httpSrv, ln}}
	if f.adminAddr != "" {
		adminLn, err := net.Listen("tcp", f.adminAddr)
		if err != nil {
			return err
		}
		servers = append(servers, served{httpapi.NewHTTPServer(f.adminAddr, srv.AdminHandler()), adminLn})
		log.Info("admin routes served on their own listener", "admin_addr", adminLn.Addr().String())
	}

	// Three lifetimes: HTTP stops first (requests in flight finish), then the
	// engine drains its inboxes, then the projection stops.
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	boardCtx, stopBoard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	defer stopBoard()
	engDone := make(chan error, 1)
	boardDone := make(chan error, 1)
	go func() { boardDone <- board.Run(boardCtx) }()
	go func() { engDone <- eng.Run(engCtx) }()

	if f.demo {
		if err := setupDemo(ctx, eng); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	printBanner(stdout, f, ln.Addr().String(), secret)

	g, gctx := errgroup.WithContext(ctx)
	if f.pprofAddr != "" {
		stopPprof, err := servePprof(f.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	for _, s := range servers {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			log.Info("shutting down: finishing requests in flight", "addr", s.ln.Addr().String())
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGraceMax)
			defer cancel()
			return s.srv.Shutdown(sctx)
		})
	}
	g.Go(func() error {
		select {
		case err := <-engDone:
			engDone <- err
			if err != nil {
				return fmt.Errorf("engine: %w", err)
			}
			return errors.New("engine stopped")
		case <-gctx.Done():
			return nil
		}
	})
	httpErr := g.Wait()
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
	if ctx.Err() != nil && httpErr != nil && strings.Contains(httpErr.Error(), "engine stopped") {
		httpErr = nil
	}
	log.Info("stopped")
	return errors.Join(httpErr, engErr, boardErr)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// prefixList is a repeatable flag of CIDRs (each value may hold several,
// comma-separated).
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	if l == nil {
		return ""
	}
	ss := make([]string, len(*l))
	for i, p := range *l {
		ss[i] = p.String()
	}
	return strings.Join(ss, ",")
}

func (l *prefixList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("want a CIDR such as 10.0.0.0/8: %w", err)
		}
		*l = append(*l, p.Masked())
	}
	return nil
}
