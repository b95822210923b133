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
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/cairnhq/cairn/internal/audit"
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

	redisPool     int
	redisMode     string
	allowVolatile bool
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
	fs.IntVar(&f.redisPool, "redis-pool-size", 0, "Redis: connections for commands (0 = 10 per CPU)")
	fs.StringVar(&f.redisMode, "redis-mode", "direct", "Redis: direct (the receiving node calls the Function) or stream (queue on the partition's request stream)")
	fs.BoolVar(&f.allowVolatile, "allow-volatile-redis", false, "Redis: serve even if Redis may lose acknowledged writes (no AOF or appendfsync not always)")
	fs.StringVar(&f.logLevel, "log-level", envOr("CAIRN_LOG_LEVEL", "info"), "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

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
	srv, err := httpapi.New(httpapi.Config{
		Engine: eng, Board: board, Secret: secret, AdminToken: adminToken,
		Logger: log, Metrics: metrics, Registry: reg,
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
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: finishing requests in flight")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGraceMax)
		defer cancel()
		return httpSrv.Shutdown(sctx)
	})
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
