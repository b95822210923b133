package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/engine/redis"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/node"
	"github.com/cairnhq/cairn/internal/telemetry"
)

type serveFlags struct {
	addr       string
	data       string
	store      string
	partitions int
	demo       bool
	logLevel   string

	pprofAddr     string
	gcPercent     int
	idemWindow    time.Duration
	snapInterval  time.Duration
	logRetention  time.Duration
	memLimitMiB   int64
	redisPool     int
	redisMode     string
	redisReplicas int
	allowVolatile bool

	// Abuse limits and the admin listener (httpapi.Config).
	claimRate      float64
	claimBurst     int
	readRate       float64
	readBurst      int
	ipRate         float64
	ipBurst        int
	trustedProxies prefixList
	adminAddr      string
	// Player token rules (httpapi.Config).
	tokenIssuer, tokenAudience string
	tokenTTLMax                time.Duration
	// The live feed's bounds (httpapi.Config).
	feedPerPlayer, feedPerAddress int
	feedRetain                    time.Duration
	// faultHook is the test-only embedded FaultHook (faulthook.go, cairnfault tag); nil in production.
	faultHook func(point string) error

	diskFreeMinMiB int64
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", envOr("CAIRN_ADDR", "127.0.0.1:8080"), "listen address (env CAIRN_ADDR)")
	fs.StringVar(&f.data, "data", envOr("CAIRN_DATA", "./cairn-data"), "data directory: the embedded store and generated secrets (env CAIRN_DATA)")
	fs.StringVar(&f.store, "store", envOr("CAIRN_STORE", "embedded"), "embedded, redis://host:port/db, or redis-cluster://host:port[,host:port...] (env CAIRN_STORE)")
	fs.IntVar(&f.partitions, "partitions", 0, "log partitions, fixed when a store is created (0: 64, or what an existing embedded store has)")
	fs.BoolVar(&f.demo, "demo", false, "create a demo hunt around Paris and print how to claim a ticket")
	fs.Int64Var(&f.diskFreeMinMiB, "disk-free-min-mib", 256, "embedded: refuse writes (503) while the store's disk has less free space than this, in MiB; -1 = never")
	fs.DurationVar(&f.idemWindow, "idempotency-window", embedded.IdempotencyWindowDefault, "embedded: how long a decided Idempotency-Key is honoured (retries replay); past it the key is a new request")
	fs.DurationVar(&f.snapInterval, "snapshot-interval", embedded.SnapshotIntervalDefault, "embedded: write a snapshot of the state this often when the log moved, and one at shutdown, so a restart replays only the log after it; 0 = never (POST /v1/admin/snapshot still writes one)")
	fs.DurationVar(&f.logRetention, "log-retention", 0, "embedded: drop the log before a snapshot once that snapshot is older than this and than --idempotency-window (the newest snapshot keeps a fallback); 0 = keep everything")
	fs.IntVar(&f.gcPercent, "gc-percent", -1, "Go GC target percent (-1: GOGC if set, else 400; a soft memory limit keeps it safe)")
	fs.Int64Var(&f.memLimitMiB, "memory-limit-mib", -1, "Go soft memory limit in MiB (-1: GOMEMLIMIT if set, else 75% of the cgroup's or the machine's memory; 0 = none)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof on this (loopback) address; off when empty")
	fs.IntVar(&f.redisPool, "redis-pool-size", 0, "Redis: connections for commands (0 = 10 per CPU)")
	fs.StringVar(&f.redisMode, "redis-mode", "direct", "Redis: direct (the receiving node calls the Function) or stream (queue on the partition's request stream)")
	fs.IntVar(&f.redisReplicas, "redis-min-replicas", -1, "Redis: answer a claim or spend only after its write reached this many replicas (WAIT), else 503; needs --redis-mode direct (-1: 1 for redis-cluster://, else 0)")
	fs.BoolVar(&f.allowVolatile, "allow-volatile-redis", false, "Redis: serve even if Redis may lose acknowledged writes (no AOF or appendfsync not always)")
	fs.StringVar(&f.logLevel, "log-level", envOr("CAIRN_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.Float64Var(&f.claimRate, "claim-rate", httpapi.ClaimRateDefault, "claims and spends per second per player, sustained (0 = no limit)")
	fs.IntVar(&f.claimBurst, "claim-burst", httpapi.ClaimBurstDefault, "claims and spends per player at once (token bucket size)")
	fs.Float64Var(&f.readRate, "read-rate", httpapi.ReadRateDefault, "reads (hunt, nearby, wallet, ledger, leaderboard with a token, opening the live feed) per second per player, sustained, per node (0 = no limit)")
	fs.IntVar(&f.readBurst, "read-burst", httpapi.ReadBurstDefault, "reads per player at once (token bucket size)")
	fs.Float64Var(&f.ipRate, "ip-rate", 0, "requests per second per client address (IPv6: per /64); 0 = off, as per-IP limits belong at the edge")
	fs.IntVar(&f.ipBurst, "ip-burst", 0, "requests per client address at once (0 = twice --ip-rate)")
	fs.Var(&f.trustedProxies, "trusted-proxy", "CIDR of a proxy whose X-Forwarded-For the per-IP limit believes (repeatable, or comma-separated)")
	fs.IntVar(&f.feedPerPlayer, "feed-streams-per-player", httpapi.StreamsPerPlayerMaxDefault, "live feed: open SSE streams per player (beyond: 429)")
	fs.IntVar(&f.feedPerAddress, "feed-streams-per-address", httpapi.StreamsPerAddressMaxDefault, "live feed: open SSE streams per client address, IPv6 per /64 (beyond: 429)")
	fs.DurationVar(&f.feedRetain, "feed-retain", httpapi.FeedRetainDefault, "live feed: how long a hunt's recent frames are kept after its last stream closes, for Last-Event-ID")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "serve /v1/admin/*, /metrics and /v1/consistency (and the probes) on this address only, not on --addr; empty = together")
	fs.StringVar(&f.tokenIssuer, "token-issuer", envOr("CAIRN_TOKEN_ISSUER", ""), "player tokens must carry this iss (empty: any) (env CAIRN_TOKEN_ISSUER)")
	fs.StringVar(&f.tokenAudience, "token-audience", envOr("CAIRN_TOKEN_AUDIENCE", ""), "player tokens must carry this aud (empty: any) (env CAIRN_TOKEN_AUDIENCE)")
	fs.DurationVar(&f.tokenTTLMax, "token-max-ttl", httpapi.TokenTTLMaxDefault, "refuse a player token whose lifetime (exp - iat) is longer")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if f.tokenTTLMax <= 0 {
		return fmt.Errorf("--token-max-ttl %v: want a positive duration", f.tokenTTLMax)
	}
	if f.idemWindow < time.Second {
		return fmt.Errorf("--idempotency-window %v: want at least 1s", f.idemWindow)
	}
	if f.logRetention < 0 {
		return fmt.Errorf("--log-retention %v: want 0 (keep everything) or a positive duration", f.logRetention)
	}
	if f.snapInterval < 0 || (f.snapInterval > 0 && f.snapInterval < time.Second) {
		return fmt.Errorf("--snapshot-interval %v: want 0 (never) or at least 1s", f.snapInterval)
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
	readRate := f.readRate
	if readRate == 0 {
		readRate = httpapi.LimitOff
	}

	sec, generated, err := ensureSecrets(f.data, os.Getenv)
	if err != nil {
		return err
	}
	if len(generated) > 0 {
		log.Info("generated "+strings.Join(generated, " and ")+", kept in the data directory (mode 0600)", "file", filepath.Join(f.data, secretsFile))
	}
	secret, adminToken := []byte(sec.secret), sec.adminToken

	reg := prometheus.NewRegistry()
	metrics := telemetry.New(reg)
	// Tracing is on when the standard OTEL_EXPORTER_OTLP_* variables name a collector.
	tp, stopTracing, err := telemetry.TracerProvider(ctx, os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}()
	if tp != nil {
		log.Info("tracing on: spans exported by OTLP/HTTP", "endpoint", cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")),
			"sampler", cmp.Or(os.Getenv("OTEL_TRACES_SAMPLER"), "parentbased_always_on"), "sampler_arg", os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	}
	eng, err := openEngine(ctx, f, log, metrics)
	if err != nil {
		return err
	}
	defer eng.Close()

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
	stopPprof := func() {}
	defer func() { stopPprof() }()
	var n *node.Node
	n, err = node.New(ctx, node.Config{
		Engine: eng, Logger: log, Metrics: metrics, Registry: reg,
		API: httpapi.Config{
			Secret: secret, AdminToken: adminToken, PlayerLimiter: playerLimiter,
			ClaimRate: claimRate, ClaimBurst: f.claimBurst, IPRate: f.ipRate, IPBurst: f.ipBurst,
			TrustedProxies: f.trustedProxies,
			Issuer:         f.tokenIssuer, Audience: f.tokenAudience, TokenTTLMax: f.tokenTTLMax,
			ReadRate: readRate, ReadBurst: f.readBurst,
			StreamsPerPlayerMax: f.feedPerPlayer, StreamsPerAddressMax: f.feedPerAddress, FeedRetain: f.feedRetain,
			TracerProvider: tp,
		},
		Addr: f.addr, AdminAddr: f.adminAddr,
		Started: func(ctx context.Context) error {
			if f.demo {
				if err := setupDemo(ctx, eng); err != nil {
					return fmt.Errorf("demo: %w", err)
				}
			}
			consoleAddr := n.Addr()
			if a := n.AdminAddr(); a != nil {
				consoleAddr = a
			}
			printBanner(stdout, f, n.Addr().String(), "http://"+consoleAddr.String()+node.ConsolePath, secret, adminToken)
			if f.pprofAddr != "" {
				stop, err := servePprof(f.pprofAddr, log)
				if err != nil {
					return err
				}
				stopPprof = stop
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	err = n.Run(ctx)
	log.Info("stopped")
	return err
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
