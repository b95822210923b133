package redis

import (
	"crypto/tls"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// clients are the engine's connections to Redis: the same roles for one
// Redis and for a cluster (where each is a cluster client with a pool per node).
type clients struct {
	rdb, blk, hc, big goredis.UniversalClient
	cc                *goredis.ClusterClient // rdb in cluster mode, else nil
}

// newClients builds the clients for cfg (defaults applied). No hidden
// retries: a command that may have run is never sent twice behind our back,
// and a dead Redis answers within CallTimeout.
func newClients(cfg Config) (clients, error) {
	if cfg.cluster() {
		return newClusterClients(cfg)
	}
	opt, err := goredis.ParseURL(cfg.URL)
	if err != nil {
		return clients{}, fmt.Errorf("redis engine: url %s: %w", redactURL(cfg.URL), err)
	}
	if cfg.PoolSize > 0 {
		opt.PoolSize = cfg.PoolSize
	}
	opt.MaxRetries = -1
	opt.DialTimeout = cfg.CallTimeout
	opt.DialerRetries = 1 // the health probe retries; a refused dial must fail at once
	opt.DialerRetryTimeout = time.Millisecond
	opt.ReadTimeout = cfg.CallTimeout
	opt.WriteTimeout = cfg.CallTimeout
	// Waiting for a connection is load, not an outage: it ends in
	// engine.ErrOverloaded after PoolTimeout, or at once when Redis goes down.
	opt.PoolTimeout = 5 * cfg.CallTimeout
	opt.ContextTimeoutEnabled = true
	opt.ClientName = "cairn-" + cfg.Consumer
	bopt := *opt
	bopt.PoolSize = cfg.Readers + 1
	bopt.MinIdleConns = 0
	hopt := *opt // the probe has its own connection, so a busy pool never looks like an outage
	hopt.PoolSize = 1
	hopt.MinIdleConns = 0
	hopt.PoolTimeout = cfg.CallTimeout
	iopt := *opt
	iopt.PoolSize = 2
	iopt.MinIdleConns = 0
	iopt.ReadTimeout = importTimeoutCalls * cfg.CallTimeout
	iopt.WriteTimeout = importTimeoutCalls * cfg.CallTimeout
	return clients{
		rdb: goredis.NewClient(opt),
		blk: goredis.NewClient(&bopt),
		hc:  goredis.NewClient(&hopt),
		big: goredis.NewClient(&iopt),
	}, nil
}

// newClusterClients: the same roles as cluster clients. Pool sizes are per
// node. MaxRedirects stays at go-redis's default (3): a MOVED or ASK answer
// during a slot migration or after a failover is followed, which never runs
// a command twice (the node that redirects has not run it).
func newClusterClients(cfg Config) (clients, error) {
	cu, err := parseClusterURL(cfg.URL)
	if err != nil {
		return clients{}, fmt.Errorf("redis engine: %w", err)
	}
	opt := &goredis.ClusterOptions{
		Addrs:                 cu.addrs,
		Username:              cu.user,
		Password:              cu.password,
		MaxRetries:            -1,
		DialTimeout:           cfg.CallTimeout,
		DialerRetries:         1,
		DialerRetryTimeout:    time.Millisecond,
		ReadTimeout:           cfg.CallTimeout,
		WriteTimeout:          cfg.CallTimeout,
		PoolTimeout:           5 * cfg.CallTimeout,
		ContextTimeoutEnabled: true,
		ClientName:            "cairn-" + cfg.Consumer,
	}
	if cu.tls {
		opt.TLSConfig = &tls.Config{ServerName: cu.host, MinVersion: tls.VersionTLS12}
	}
	if cfg.PoolSize > 0 {
		opt.PoolSize = cfg.PoolSize
	}
	// Each client gets its own copy of the seed list: go-redis appends the
	// address of a node it discovers (a primary added to the cluster) to
	// the slice it was given, under its own lock only, so clients sharing
	// one backing array would race on it.
	opt.Addrs = slices.Clip(slices.Clone(opt.Addrs))
	hopt := *opt
	hopt.Addrs = slices.Clip(slices.Clone(opt.Addrs))
	hopt.PoolSize = 1
	hopt.PoolTimeout = cfg.CallTimeout
	bopt := *opt
	bopt.Addrs = slices.Clip(slices.Clone(opt.Addrs))
	bopt.PoolSize = 2
	iopt := *opt
	iopt.Addrs = slices.Clip(slices.Clone(opt.Addrs))
	iopt.PoolSize = 2
	iopt.ReadTimeout = importTimeoutCalls * cfg.CallTimeout
	iopt.WriteTimeout = importTimeoutCalls * cfg.CallTimeout
	cc := goredis.NewClusterClient(opt)
	return clients{
		rdb: cc,
		cc:  cc,
		blk: goredis.NewClusterClient(&bopt),
		hc:  goredis.NewClusterClient(&hopt),
		big: goredis.NewClusterClient(&iopt),
	}, nil
}
