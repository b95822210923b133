package redis

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Config configures one node's Redis engine. Zero values mean the defaults
// given on each field. Validate reports every problem at once.
type Config struct {
	// URL is redis://[user:password@]host:port/db or rediss:// (TLS) for one
	// Redis (with its replicas), or redis-cluster://[user:password@]host:port[,host:port...]
	// or rediss-cluster:// (TLS) for a Redis Cluster: the addresses are seeds,
	// the client learns the rest of the cluster from them.
	URL string
	// PoolSize is the number of connections for commands (claims, reads,
	// admin); default 10 per GOMAXPROCS. Blocking stream reads have their own
	// connections (one per reader, plus the log tailer).
	PoolSize int
	// Partitions is the number of log partitions; default 64. It is stored
	// in Redis on first start; a node with another number is refused.
	Partitions int
	// PrefixLen is the geohash prefix length that picks a new hotspot's partition; default 4 (stored too).
	PrefixLen int
	// Readers is the number of blocking XREADGROUP loops per node, each
	// owning Partitions/Readers request streams; default min(Partitions, 64).
	Readers int
	// Consumer names this node in the consumer group and its answer channel;
	// default host-pid-random. It must be unique among live nodes.
	Consumer string
	// MinIdle is how long an entry stays pending with a silent consumer before
	// another node reclaims it (XAUTOCLAIM); default 5s.
	MinIdle time.Duration
	// ConsumerIdleMax: a consumer of the group idle this long with no entry
	// pending (a node gone for good) is removed from the group by any node's
	// maintenance; default 10m (or twice MinIdle when that is longer). Live
	// nodes read at least every 2 s.
	ConsumerIdleMax time.Duration
	// DeliveriesMax: an entry delivered this many times without being decided
	// goes to the partition's dead-letter stream; default 5.
	DeliveriesMax int
	// BatchLenMax bounds the entries read and decided in one pipelined batch; default 256.
	BatchLenMax int
	// InflightMax bounds the claims and spends this node waits for at once;
	// beyond it calls fail fast with engine.ErrOverloaded; default 16384.
	InflightMax int
	// CallTimeout bounds each Redis round trip on the request path, so a dead
	// Redis answers engine.ErrUnavailable within it; default 1s.
	CallTimeout time.Duration
	// HealthInterval is the period of the liveness probe that flips Ready and
	// fails waiting calls when Redis goes away; default 200ms.
	HealthInterval time.Duration
	// MaintenanceInterval is the period of stream trimming, lag sampling and
	// re-checking long waits; default 1s.
	MaintenanceInterval time.Duration
	// AllowVolatile lets the engine run on a Redis that may lose acknowledged
	// writes (no AOF, or appendfsync other than always). It logs a warning.
	AllowVolatile bool
	// MinReplicas: a claim or spend is answered only after its write reached
	// at least this many replicas (WAIT on the connection that wrote it), or
	// refused with engine.ErrUnavailable (503; the decision stands and a
	// retry with the same key replays it); default 0 (no replica asked) for
	// one Redis, 1 for a cluster (WAIT on the shard that took the write); a
	// negative value asks no replica in either. Needs Direct: the stream
	// pipeline publishes answers from inside the Function, before a WAIT
	// could run.
	MinReplicas int
	// ReplicaTimeout bounds the wait for MinReplicas; default CallTimeout/2.
	ReplicaTimeout time.Duration
	// Direct: the node that receives a claim calls the Function itself
	// instead of queueing it on the partition's request stream. Same Function,
	// same log; the stream pipeline keeps running for entries queued by others.
	Direct bool
	// Clock is the deciding node's clock; default time.Now.
	Clock func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
	// Metrics; default telemetry.Discard().
	Metrics *telemetry.Metrics
}

// Defaults.
const (
	MinIdleDefault             = 5 * time.Second
	ConsumerIdleMaxDefault     = 10 * time.Minute
	DeliveriesMaxDefault       = 5
	BatchLenMaxDefault         = 256
	BatchLenMaxMax             = 4096
	InflightMaxDefault         = 16384
	CallTimeoutDefault         = time.Second
	HealthIntervalDefault      = 200 * time.Millisecond
	MaintenanceIntervalDefault = time.Second
	ReadersMax                 = 64
	MinReplicasMax             = 16
)

func (c Config) withDefaults() Config {
	c.Partitions = cmp.Or(c.Partitions, geo.PartitionsDefault)
	c.PrefixLen = cmp.Or(c.PrefixLen, geo.PrefixLenDefault)
	c.Readers = cmp.Or(c.Readers, min(c.Partitions, ReadersMax))
	c.MinIdle = cmp.Or(c.MinIdle, MinIdleDefault)
	if c.ConsumerIdleMax == 0 {
		c.ConsumerIdleMax = max(ConsumerIdleMaxDefault, 2*max(c.MinIdle, readBlock))
	}
	c.DeliveriesMax = cmp.Or(c.DeliveriesMax, DeliveriesMaxDefault)
	c.BatchLenMax = cmp.Or(c.BatchLenMax, BatchLenMaxDefault)
	c.InflightMax = cmp.Or(c.InflightMax, InflightMaxDefault)
	c.CallTimeout = cmp.Or(c.CallTimeout, CallTimeoutDefault)
	c.ReplicaTimeout = cmp.Or(c.ReplicaTimeout, c.CallTimeout/2)
	switch {
	case c.MinReplicas < 0:
		c.MinReplicas = 0
	case c.MinReplicas == 0 && c.cluster():
		c.MinReplicas = 1
	}
	c.HealthInterval = cmp.Or(c.HealthInterval, HealthIntervalDefault)
	c.MaintenanceInterval = cmp.Or(c.MaintenanceInterval, MaintenanceIntervalDefault)
	// Defaults that must be built (a random consumer name, metrics) are
	// built only when missing; a func (Clock) is not comparable.
	if c.Consumer == "" {
		c.Consumer = defaultConsumer()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Discard()
	}
	return c
}

// Validate checks the configuration (after defaults) and joins every problem.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("redis config: "+format, args...)) }
	if c.cluster() {
		if _, err := parseClusterURL(c.URL); err != nil {
			bad("%v", err)
		}
		if !c.Direct {
			bad("a cluster needs direct mode: the request streams and answers by Pub/Sub are not built for Redis Cluster")
		}
	} else if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		bad("url %q must look like redis://host:port/db, rediss://..., or redis-cluster://host:port[,host:port...]", redactURL(c.URL))
	}
	if c.PoolSize < 0 {
		bad("pool size %d must be >= 0", c.PoolSize)
	}
	if c.Partitions < 1 || c.Partitions > geo.PartitionsMax {
		bad("partitions %d must be in [1, %d]", c.Partitions, geo.PartitionsMax)
	}
	if c.PrefixLen < 1 || c.PrefixLen > geo.PrefixLenMax {
		bad("prefix length %d must be in [1, %d]", c.PrefixLen, geo.PrefixLenMax)
	}
	if c.Readers < 1 || c.Readers > min(c.Partitions, ReadersMax) {
		bad("readers %d must be in [1, min(partitions, %d)]", c.Readers, ReadersMax)
	}
	if !hunt.ValidID(c.Consumer) {
		bad("consumer %q must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", c.Consumer, hunt.IDLenMax)
	}
	if c.MinIdle < time.Millisecond {
		bad("min idle %v must be >= 1ms", c.MinIdle)
	}
	if c.ConsumerIdleMax < 2*max(c.MinIdle, readBlock) {
		bad("consumer idle max %v must be >= twice max(min idle %v, the %v read block)", c.ConsumerIdleMax, c.MinIdle, readBlock)
	}
	if c.DeliveriesMax < 1 {
		bad("deliveries max %d must be >= 1", c.DeliveriesMax)
	}
	if c.BatchLenMax < 1 || c.BatchLenMax > BatchLenMaxMax {
		bad("batch length max %d must be in [1, %d]", c.BatchLenMax, BatchLenMaxMax)
	}
	if c.InflightMax < 1 {
		bad("inflight max %d must be >= 1", c.InflightMax)
	}
	if c.CallTimeout < time.Millisecond {
		bad("call timeout %v must be >= 1ms", c.CallTimeout)
	}
	if c.MinReplicas < 0 || c.MinReplicas > MinReplicasMax {
		bad("min replicas %d must be in [0, %d]", c.MinReplicas, MinReplicasMax)
	}
	if c.MinReplicas > 0 && !c.Direct {
		bad("min replicas %d needs direct mode: the stream pipeline answers from inside the Function, before WAIT", c.MinReplicas)
	}
	if c.MinReplicas > 0 && (c.ReplicaTimeout < time.Millisecond || c.ReplicaTimeout >= c.CallTimeout) {
		bad("replica timeout %v must be in [1ms, call timeout %v)", c.ReplicaTimeout, c.CallTimeout)
	}
	if c.HealthInterval < time.Millisecond || c.MaintenanceInterval < time.Millisecond {
		bad("health interval %v and maintenance interval %v must be >= 1ms", c.HealthInterval, c.MaintenanceInterval)
	}
	return errors.Join(errs...)
}

// cluster reports whether URL names a Redis Cluster.
func (c Config) cluster() bool {
	return strings.HasPrefix(c.URL, "redis-cluster://") || strings.HasPrefix(c.URL, "rediss-cluster://")
}

// clusterURL is a parsed redis-cluster:// or rediss-cluster:// URL.
type clusterURL struct {
	addrs    []string
	user     string
	password string
	tls      bool
	host     string // of the first address, for TLS server name checks
}

// clusterAddrsMax bounds the seed addresses of a cluster URL.
const clusterAddrsMax = 64

// parseClusterURL reads redis-cluster://[user:password@]host:port[,host:port...]
// (rediss-cluster:// for TLS). A cluster has one database, so the path is
// empty (or /0); no query parameters.
func parseClusterURL(s string) (clusterURL, error) {
	var cu clusterURL
	rest, ok := strings.CutPrefix(s, "redis-cluster://")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "rediss-cluster://"); !ok {
			return cu, fmt.Errorf("cluster url %q must start with redis-cluster:// or rediss-cluster://", redactURL(s))
		}
		cu.tls = true
	}
	// The redacted form for messages: the user info is dropped.
	shown := s
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		shown = strings.SplitN(s, "://", 2)[0] + "://" + rest[at+1:]
		info, err := url.PathUnescape(rest[:at])
		if err != nil {
			return cu, fmt.Errorf("cluster url %q: user info: %v", shown, err)
		}
		cu.user, cu.password, _ = strings.Cut(info, ":")
		rest = rest[at+1:]
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" && path != "0" || strings.Contains(hosts, "?") {
		return cu, fmt.Errorf("cluster url %q: no database (a cluster has only 0) and no query parameters", shown)
	}
	for _, a := range strings.Split(hosts, ",") {
		h, p, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(p); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
			return cu, fmt.Errorf("cluster url %q: address %q must be host:port", shown, a)
		}
		if cu.host == "" {
			cu.host = h
		}
		cu.addrs = append(cu.addrs, a)
	}
	if len(cu.addrs) > clusterAddrsMax {
		return cu, fmt.Errorf("cluster url %q: %d addresses, at most %d", shown, len(cu.addrs), clusterAddrsMax)
	}
	return cu, nil
}

// redactURL hides a password in URL for messages.
func redactURL(s string) string {
	if at := strings.LastIndex(s, "@"); at >= 0 && (strings.HasPrefix(s, "redis-cluster://") || strings.HasPrefix(s, "rediss-cluster://")) {
		return strings.SplitN(s, "://", 2)[0] + "://xxxxx@" + s[at+1:]
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

func defaultConsumer() string {
	host, err := os.Hostname()
	if err != nil || !hunt.ValidID(host) || len(host) > 64 {
		host = "node"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomHex(4))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
