// Package redis is Cairn's Redis engine: any number of stateless Cairn nodes
// share one Redis, which holds all state, and give the same outcomes and keep
// the same invariants (I1–I7, docs/ARCHITECTURE.md) as the embedded engine.
//
// The pipeline. A node that receives a claim resolves the hotspot's partition
// (pinned at the hotspot's first import, cached) and appends a request entry
// to the partition's stream cairn:{pN}:req. Every node joins the consumer
// group ClaimProcessor on every request stream and reads batches with blocking
// XREADGROUP loops; for each entry it calls the Redis Function cairn_claim (or
// cairn_spend), which in one atomic step checks the idempotency record,
// decides with hunt.DecideClaim's rules, applies the effects (tickets,
// claimers, wallet, ledger, last position), appends the ClaimCompleted event
// to the partition's log stream cairn:{pN}:log with id "<seq>-0",
// acknowledges the entry and publishes the answer on the receiving node's
// channel cairn:done:<consumer>. In Direct mode the receiving node calls the
// same Function itself and skips the stream. docs/REDIS.md has the key
// layout, the library, the durability promise and the cluster story.
//
// Invariants. The Function is the only writer of decisions, so I1–I4 hold by
// Redis's one-function-at-a-time execution; the log is never trimmed (I7);
// an entry is acknowledged by the same Function call that records its
// decision, so it is either decided or still pending, never lost, and a
// second delivery (a reclaim, a duplicate in flight, a retried call) finds the
// idempotency record and replays it. A node answers 2xx only with a decision
// it read back from Redis, which Redis (appendfsync always) sends only after
// the AOF write is fsynced (I6).
//
// Concurrency. Every exported method is safe for concurrent use. Run owns the
// long-lived goroutines: one health probe, one Pub/Sub listener, one log
// tailer (feeds sinks in seq order per partition), Readers stream readers,
// one reclaimer and one maintenance loop; each exits when Run's context ends.
// Claims and spends block until Run has started and fail with
// engine.ErrClosed once it stops.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

var _ engine.Engine = (*Engine)(nil)

// Errors of this engine; operating conditions wrap engine.ErrUnavailable.
var (
	// ErrVolatile: Redis would lose acknowledged writes and AllowVolatile is off.
	ErrVolatile = errors.New("redis engine: redis persistence may lose acknowledged writes")
	// ErrMismatch: Redis holds state made with another partition count or prefix length.
	ErrMismatch = errors.New("redis engine: redis holds state of another configuration")
	// ErrLibraryNewer: Redis holds a newer cairn library than this node's.
	ErrLibraryNewer = errors.New("redis engine: redis holds a newer cairn function library")
	// ErrNotReplicated: a decision was written but did not reach MinReplicas
	// replicas within ReplicaTimeout; callers see it wrapped in
	// engine.ErrUnavailable (503), and a retry with the same key replays it.
	ErrNotReplicated = errors.New("redis engine: write not acknowledged by enough replicas")
)

// sinkWaitMax bounds how long an answer waits for the local tailer to have fed
// the event to the sinks. The decision is durable either way; the wait keeps
// the contract "sinks see a batch before its callers are answered" on the
// node that answers, and gives up only when the tailer is cut off.
const sinkWaitMax = time.Second

// recheckAfter: a waiting call older than this asks Redis for its decision
// directly, in case the published answer was lost (Pub/Sub is at-most-once).
const recheckAfter = 2 * time.Second

// hotspotCacheLenMax bounds the node's cache of hotspot partitions.
const hotspotCacheLenMax = 1 << 20

// Engine is one node's view of the shared Redis. See the package doc.
type Engine struct {
	cfg Config
	log *slog.Logger
	met *telemetry.Metrics
	rdb goredis.UniversalClient // commands; closed by Close
	// cc is rdb as a cluster client in cluster mode (nil for one Redis): its
	// per-node clients carry the calls that WAIT (cluster.go).
	cc *goredis.ClusterClient
	ks keyspace
	// ap batches the request path's concurrent calls (XADD, direct FCALL) into
	// pipelines on few connections: measured ~1.7x the throughput of one
	// pooled round trip per call, on a par with rueidis (docs/REDIS.md).
	ap  *goredis.AutoPipeliner
	blk goredis.UniversalClient // blocking stream reads; closed when Run stops, which unblocks them
	hc  goredis.UniversalClient // the health probe's own connection
	// big carries the calls that may run long on a busy Redis (an import of
	// up to ImportBatchMax hotspots in one Function call): its socket
	// timeouts are importTimeoutCalls × CallTimeout, not CallTimeout.
	big   goredis.UniversalClient
	clock atomic.Pointer[func() time.Time]

	parts     []partState
	reqKeys   []string
	logKeys   []string
	partOfKey map[string]geo.Partition
	lagGauge  []prometheus.Gauge
	// upGauge is 1 while the health probe reaches Redis; pingSeconds times its PING.
	upGauge     prometheus.Gauge
	pingSeconds prometheus.Observer

	channel     string // this node's answer channel
	incarnation string // request ids are incarnation.counter: unique across restarts
	ridSeq      atomic.Uint64
	inflight    atomic.Int64
	waiters     waiters

	hsMu       sync.RWMutex
	hsLookups  singleflight.Group
	hsCache    map[hsKey]geo.Partition
	sinks      []engine.Sink
	avail      availability
	kick       chan struct{} // asks the health loop to probe now
	recheckNow chan struct{} // asks the maintenance loop to re-check every waiting call
	running    atomic.Bool
	started    chan struct{} // closed when Run has started
	stopping   chan struct{} // closed when Run's context is done
	closed     atomic.Bool

	// testHookAfterRead, when set, is called with every batch a reader took
	// from the request streams; true drops the batch unprocessed and
	// unacknowledged, as a node that dies right after XREADGROUP would.
	testHookAfterRead func() bool
	// testHookBeforeCredit, when set, is called between the decide and the
	// credit of a split cluster claim; true ends the call there with
	// ErrUnavailable, as a node that dies between the two would.
	testHookBeforeCredit func() bool
	// swept counts the credits this node's sweeper applied (cluster mode).
	swept atomic.Int64
	// libPrimaries holds the clusterNodes found with the function library
	// (cluster mode, libraryOnNewPrimaries).
	libPrimaries sync.Map
}

type hsKey struct {
	hunt    hunt.HuntID
	hotspot hunt.HotspotID
}

// partState is what this node knows of one partition: the watermark (the
// last event fed to the sinks) and the request stream's backlog.
type partState struct {
	// feedMu serialises feeding the sinks for this partition (the tailer and
	// the answers of this node's own calls both feed, see Engine.feed) and
	// guards early; mu, taken inside it, guards seq, at and ch for readers.
	feedMu sync.Mutex
	early  map[hunt.Seq]hunt.Event // answered events past the watermark, at most earlyLenMax
	mu     sync.Mutex
	seq    hunt.Seq
	at     time.Time
	ch     chan struct{} // closed and replaced when seq advances
	depth  atomic.Int64
}

func (p *partState) advance(seq hunt.Seq, at time.Time) {
	p.mu.Lock()
	if seq > p.seq {
		p.seq, p.at = seq, at
		close(p.ch)
		p.ch = make(chan struct{})
	}
	p.mu.Unlock()
}

func (p *partState) get() (hunt.Seq, time.Time, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq, p.at, p.ch
}

// Open connects to Redis, checks its persistence settings, loads or upgrades
// the function library, creates the consumer groups and reads each
// partition's last committed epoch. It does not start processing: call Run.
// An unreachable Redis is an error wrapping engine.ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	clients, err := newClients(cfg)
	if err != nil {
		return nil, err
	}

	e := &Engine{
		cfg:         cfg,
		log:         cfg.Logger,
		met:         cfg.Metrics,
		rdb:         clients.rdb,
		cc:          clients.cc,
		ks:          keyspace{cluster: cfg.cluster(), partitions: cfg.Partitions},
		blk:         clients.blk,
		hc:          clients.hc,
		big:         clients.big,
		parts:       make([]partState, cfg.Partitions),
		reqKeys:     make([]string, cfg.Partitions),
		logKeys:     make([]string, cfg.Partitions),
		partOfKey:   make(map[string]geo.Partition, 2*cfg.Partitions),
		lagGauge:    telemetry.PartitionGauges(cfg.Metrics.ConsumerLag, cfg.Partitions),
		upGauge:     cfg.Metrics.RedisUp.WithLabelValues(),
		pingSeconds: cfg.Metrics.RedisPing.WithLabelValues(),
		channel:     keyDone(cfg.Consumer),
		incarnation: randomHex(6),
		hsCache:     make(map[hsKey]geo.Partition),
		kick:        make(chan struct{}, 1),
		recheckNow:  make(chan struct{}, 1),
		started:     make(chan struct{}),
		stopping:    make(chan struct{}),
	}
	// The retry kinds exist from the start (at 0), so dashboards and alerts
	// see a series before the first reconnect or reclaim.
	cfg.Metrics.Retries.WithLabelValues("reclaim")
	cfg.Metrics.Retries.WithLabelValues("reconnect")
	if cfg.cluster() {
		cfg.Metrics.Retries.WithLabelValues("credit")
	}
	if e.ap, err = e.rdb.AutoPipeline(); err != nil {
		e.rdb.Close()
		e.blk.Close()
		e.hc.Close()
		e.big.Close()
		return nil, fmt.Errorf("redis engine: autopipeline: %w", err)
	}
	e.avail.ch = make(chan struct{})
	e.avail.ctx, e.avail.cancel = context.WithCancel(context.Background())
	e.avail.cancel() // down until setup succeeds
	clock := cfg.Clock
	e.clock.Store(&clock)
	for p := range e.parts {
		e.parts[p].ch = make(chan struct{})
		e.reqKeys[p] = keyReq(geo.Partition(p))
		e.logKeys[p] = keyLog(geo.Partition(p))
		e.partOfKey[e.reqKeys[p]] = geo.Partition(p)
		e.partOfKey[e.logKeys[p]] = geo.Partition(p)
	}
	if err := e.setup(ctx); err != nil {
		e.closeClients()
		return nil, err
	}
	if err := e.loadHeads(ctx); err != nil {
		e.closeClients()
		return nil, err
	}
	e.avail.set(true, nil)
	e.upGauge.Set(1)
	return e, nil
}

// Run processes until ctx is done, then finishes the batches in flight,
// fails the calls still waiting with engine.ErrClosed, and returns.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("redis engine: Run called twice")
	}
	if e.closed.Load() {
		return engine.ErrClosed
	}
	var wg sync.WaitGroup
	goFn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	goFn(e.healthLoop)
	if e.cc != nil {
		// A cluster: direct calls only, the log tailed per slot, pending
		// credits swept (cluster.go). No request streams, no Pub/Sub.
		goFn(e.tailCluster)
		goFn(e.maintainCluster)
		close(e.started)
		<-ctx.Done()
		close(e.stopping)
		wg.Wait()
		return nil
	}
	ps := e.rdb.Subscribe(ctx, e.channel)
	// Wait for the subscription before taking claims, so no answer is
	// published to nobody; if Redis is down the listener recovers later.
	sctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	_, _ = ps.Receive(sctx)
	cancel()

	goFn(func(ctx context.Context) { e.listen(ctx, ps) })
	goFn(e.tail)
	for r := 0; r < e.cfg.Readers; r++ {
		var parts []geo.Partition
		for p := r; p < e.cfg.Partitions; p += e.cfg.Readers {
			parts = append(parts, geo.Partition(p))
		}
		goFn(func(ctx context.Context) { e.consume(ctx, parts) })
	}
	goFn(e.reclaimLoop)
	goFn(e.maintain)
	close(e.started)

	<-ctx.Done()
	close(e.stopping)
	// Unblock the blocking reads; batches being decided use e.rdb and finish.
	_ = e.blk.Close()
	_ = ps.Close()
	wg.Wait()
	e.waiters.failAll(engine.ErrClosed)
	return nil
}

// Close releases the connections. Call after Run returned (or without Run).
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	return e.closeClients()
}

func (e *Engine) closeClients() error {
	e.ap.Close()
	e.blk.Close()
	e.hc.Close()
	e.big.Close()
	return e.rdb.Close()
}

// Subscribe adds a sink for committed batches. Call before Run.
func (e *Engine) Subscribe(s engine.Sink) {
	if e.running.Load() {
		panic("redis engine: Subscribe after Run")
	}
	e.sinks = append(e.sinks, s)
}

// SetClock replaces the deciding clock (tests).
func (e *Engine) SetClock(now func() time.Time) { e.clock.Store(&now) }

// now is the time of one batch's decisions, at the log's precision (ms, UTC),
// as the embedded engine decides: an event's At then justifies its outcome,
// and both engines agree at a window's edge and on implied speeds.
func (e *Engine) now() time.Time { return (*e.clock.Load())().UTC().Truncate(time.Millisecond) }

// Partitions is the number of log partitions.
func (e *Engine) Partitions() int { return e.cfg.Partitions }

// Consumer is this node's name in the consumer group.
func (e *Engine) Consumer() string { return e.cfg.Consumer }

// Ready reports whether the engine accepts claims now.
func (e *Engine) Ready() error {
	select {
	case <-e.stopping:
		return engine.ErrClosed
	default:
	}
	if e.closed.Load() {
		return engine.ErrClosed
	}
	select {
	case <-e.started:
	default:
		return fmt.Errorf("%w: not running yet", engine.ErrUnavailable)
	}
	if up, _, err := e.avail.get(); !up {
		return unavailable("redis", err)
	}
	return nil
}

// Status reports each partition's last committed epoch (as this node's
// tailer has seen it) and its request backlog (lag + pending, sampled).
func (e *Engine) Status() []engine.Status {
	out := make([]engine.Status, len(e.parts))
	for p := range e.parts {
		seq, at, _ := e.parts[p].get()
		out[p] = engine.Status{
			Component: fmt.Sprintf("partition/%d", p),
			Epoch:     hunt.Epoch{Partition: geo.Partition(p), Seq: seq},
			At:        at,
			Depth:     int(e.parts[p].depth.Load()),
		}
	}
	return out
}
