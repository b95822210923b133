// Package embedded is Cairn's default claim engine: one process, one Pebble
// store, one writer goroutine per log partition and one committer.
//
// Pipeline. A claim is checked, its hotspot looked up (unknown hunt or
// hotspot: an error, nothing recorded), its (player, key) reserved in the
// idempotency index, and offered to its partition's bounded inbox (full:
// engine.ErrOverloaded, and the reservation is undone). The partition's
// writer takes one request, drains up to BatchLenMax more without blocking,
// decides them in order with hunt.DecideClaim / hunt.DecideSpend against its
// own state (so the second claim of a single ticket in one batch is
// sold_out), applies them to that state and encodes their events into the
// partition's pending batch, which it hands to the committer. The committer
// writes the ready batches of every partition as ONE synced Pebble write (a
// group), and settles groups in order: once a group is synced it publishes
// the new state, feeds the sinks and wakes the callers (commit.go). A writer
// decides its next batch while earlier ones are being synced, up to
// PipelineDepth batches ahead. The store's key layout is documented at the
// top of store.go; the fold (apply, publish) in fold.go.
//
// Invariants. I1: a writer alone decides its hotspots, and imports clamp
// tickets to what is decided. I2: claimer sets live with the hotspot, owned by
// its writer. I3: (player, key) has one entry across all partitions;
// duplicates in flight wait for the first decision. I4: credits are added only
// once their grant is durable; a player's spends are serialized by one writer
// (the partition of hash(player)), which reserves by an atomic subtract of a
// balance that other partitions can only raise. I6: nobody is answered before
// the group holding their batch is synced. I7: memory is a cache; Open
// rebuilds it by folding the log through the writer's own apply and publish,
// applying recorded outcomes without deciding again.
//
// Concurrency. Every exported method is safe for concurrent use. A
// partition's state (decided counts, claimer sets, its seq) has no mutex:
// only its writer touches it. What others read (hotspot definitions, granted
// counts, epochs) is published through atomics by the committer after the
// group that changed it is durable, in each partition's seq order. Shared
// maps (idempotency, wallets, positions, the hotspot index) are sharded
// behind small mutexes.
//
// Lifecycle. Open loads the store; Hunts, Hunt, Hotspots, Nearby, Wallet,
// Ledger and Events work from then on (the offline verifier needs no Run),
// and PutHunt writes directly. Claim, Spend and ImportHotspots answer
// engine.ErrClosed until Run starts the writers and after it stops them. When
// Run's ctx is done, new calls get ErrClosed, the writers decide every
// request already in their inboxes, the committer commits and answers them,
// and Run returns. Close then closes Pebble.
//
// Failure. If a group fails (a Pebble error, or a FaultHook error in tests),
// memory may be ahead of disk, so the engine fails for good before any later
// group is written: every waiting and later Claim, Spend, ImportHotspots and
// PutHunt gets engine.ErrUnavailable, Ready returns the failure, and Run stops
// the writers and returns it (wrapping engine.ErrUnavailable), so that the
// process exits. Recovery is a restart: Open folds the log, which holds
// exactly the groups that committed. Reads keep answering from published
// (durable) state; a wallet read waiting for a spend of the failed group
// gets engine.ErrUnavailable (read.go).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

var _ engine.Engine = (*Engine)(nil)

// Engine is the embedded engine. Create it with Open.
type Engine struct {
	revokeMu  sync.Mutex // serializes RevokeTokens' read-modify-write (revoke.go)
	cfg       Config
	meta      meta
	prefixLen int
	db        *pebble.DB
	rd        reader // what load reads: db, or a Pebble snapshot (snapshot.go)
	log       *slog.Logger
	metrics   *telemetry.Metrics
	parts     []*partition
	commit    *committer                // set by Run
	committer atomic.Pointer[committer] // the same, for other goroutines (Snapshot)

	snap snapState
	base atomic.Pointer[logBase] // where the log was truncated (retention.go); nil: whole

	hunts   huntRegistry
	spots   hotspotTable
	idem    idemIndex
	pos     posIndex
	wallets walletIndex

	shedOverloaded  prometheus.Counter
	shedUnavailable prometheus.Counter
	diskGuard       prometheus.Gauge // 1 while diskLow

	sinks struct {
		sync.Mutex
		list []engine.Sink
	}
	running atomic.Bool
	ran     atomic.Bool
	// accepting is set once every partition's gate is open and cleared
	// before any closes, so Ready never promises what a partition refuses.
	accepting atomic.Bool
	closed    atomic.Bool
	failErr   atomic.Pointer[error]
	// diskLow is set while free space is below cfg.DiskFreeMinBytes;
	// diskCheckedNs is when it was last measured (see checkDisk).
	diskLow       atomic.Bool
	diskCheckedNs atomic.Int64
	diskMin       atomic.Int64 // cfg.DiskFreeMinBytes; atomic so tests can move it
	failOnce      sync.Once
	failCh        chan struct{}
}

// Open opens (or creates) the store in cfg.Dir, loads hunts and hotspots and
// replays the log to rebuild all in-memory state. A record that does not
// decode is an error naming its key (ErrCorrupt); a store made with another
// partition count or prefix length is ErrLayout.
func Open(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	db, err := pebble.Open(cfg.Dir, &pebble.Options{
		Logger: pebbleLogger{cfg.Logger},
		// Memtables start small and double up to this: small stores stay
		// small, busy ones flush less often.
		MemTableSize:       64 << 20,
		FormatMajorVersion: pebble.FormatNewest,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: open pebble in %s: %w", cfg.Dir, err)
	}
	m, err := settleMeta(db, cfg)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	cfg.Partitions, cfg.PrefixLen = m.Partitions, m.PrefixLen
	start := time.Now()
	e, err := openState(cfg, db, m)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: load %s: %w", cfg.Dir, err)
	}
	if err := e.dropPrefix(); err != nil { // finish a truncation a crash cut short
		db.Close()
		return nil, fmt.Errorf("embedded: finish truncating the log: %w", err)
	}
	e.log.Info("embedded store opened", "dir", cfg.Dir, "partitions", m.Partitions,
		"prefix_len", m.PrefixLen, "snapshot", e.snap.loaded, "load", time.Since(start))
	return e, nil
}

// newEngine returns an engine with empty state over db, whose load reads
// from rd: db itself, or a Pebble snapshot of it (the snapshot builder).
func newEngine(cfg Config, db *pebble.DB, rd reader, m meta) *Engine {
	e := &Engine{
		cfg: cfg, prefixLen: m.PrefixLen, db: db, rd: rd, log: cfg.Logger, metrics: cfg.Metrics,
		failCh:          make(chan struct{}),
		shedOverloaded:  cfg.Metrics.Shed.WithLabelValues("overloaded"),
		shedUnavailable: cfg.Metrics.Shed.WithLabelValues("unavailable"),
		diskGuard:       cfg.Metrics.DiskGuard.WithLabelValues(),
		meta:            m,
	}
	e.diskMin.Store(cfg.DiskFreeMinBytes)
	e.idem.init(db, cfg.IdempotencyWindow, cfg.IdemCacheLenMax, cfg.IdemKeysExpected)
	e.idem.gone = func(p geo.Partition, seq hunt.Seq) bool { return seq < e.logStartOf(p) }
	e.hunts.init()
	e.spots.init()
	gauges := telemetry.PartitionGauges(cfg.Metrics.InboxDepth, m.Partitions)
	e.parts = make([]*partition, m.Partitions)
	for i := range e.parts {
		p := &partition{
			e: e, id: geo.Partition(i), name: "partition/" + strconv.Itoa(i),
			inbox: make(chan *request, cfg.InboxLenMax), depth: gauges[i],
		}
		p.gate.closed = true
		e.parts[i] = p
	}
	return e
}

// now is the time of one batch's decisions, at the log's precision (ms, UTC)
// so that what replay reads back equals what was decided live.
func (e *Engine) now() time.Time { return e.cfg.Clock().UTC().Truncate(time.Millisecond) }

func (e *Engine) hook(point string) error {
	if e.cfg.FaultHook == nil {
		return nil
	}
	return e.cfg.FaultHook(point)
}

func (e *Engine) failure() error {
	if p := e.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *Engine) setFailed(err error) {
	e.failOnce.Do(func() {
		e.failErr.Store(&err)
		close(e.failCh)
		e.log.Error("embedded engine failed; it answers unavailable until restarted", "err", err)
	})
}

// errDiskLow is what writes get while the disk is nearly full.
var errDiskLow = fmt.Errorf("%w: the store's disk is nearly full", engine.ErrUnavailable)

// diskCheckEvery bounds how often free space is measured (one statfs).
const diskCheckEvery = 100 * time.Millisecond

// checkDisk measures free space at most every diskCheckEvery (any goroutine
// may call it; it is one atomic load when not due) and reports whether it is
// below the minimum.
func (e *Engine) checkDisk() bool {
	min := e.diskMin.Load()
	if min < 0 {
		return false
	}
	now := time.Now().UnixNano()
	last := e.diskCheckedNs.Load()
	if now-last < int64(diskCheckEvery) || !e.diskCheckedNs.CompareAndSwap(last, now) {
		return e.diskLow.Load()
	}
	free, err := diskFree(e.cfg.Dir)
	low := err == nil && free < uint64(min)
	if was := e.diskLow.Swap(low); was != low {
		e.diskGuard.Set(b2f(low))
		if low {
			e.log.Error("disk nearly full: refusing writes until space returns",
				"dir", e.cfg.Dir, "free_bytes", free, "min_bytes", min)
		} else {
			e.log.Info("disk space back: accepting writes", "dir", e.cfg.Dir, "free_bytes", free)
		}
	}
	return low
}

// b2f is 1 for true, 0 for false (a gauge's value).
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writable reports whether writes may be attempted at all.
func (e *Engine) writable() error {
	if e.failure() != nil {
		return engine.ErrUnavailable
	}
	if e.checkDisk() {
		return errDiskLow
	}
	if e.closed.Load() {
		return engine.ErrClosed
	}
	return nil
}

// expireIdem drops the idempotency records older than the window.
func (e *Engine) expireIdem() {
	if err := e.idem.expire(e.now()); err != nil {
		e.log.Error("dropping expired idempotency records failed; retrying later", "err", err)
	}
}

// Partitions is the number of log partitions.
func (e *Engine) Partitions() int { return len(e.parts) }

// PrefixLen is the geohash prefix length that partitions new hotspots.
func (e *Engine) PrefixLen() int { return e.prefixLen }

// Subscribe adds a sink. It must be called before Run (it panics otherwise:
// writers read the sink list without a lock).
func (e *Engine) Subscribe(s engine.Sink) {
	if e.running.Load() || e.ran.Load() {
		panic("embedded: Subscribe after Run")
	}
	e.sinks.Lock()
	e.sinks.list = append(e.sinks.list, s)
	e.sinks.Unlock()
}

// Run starts the partition writers and returns after ctx is done and every
// request already accepted is committed and answered, or after a commit
// failure (then with an error wrapping engine.ErrUnavailable). Run may be
// called once.
func (e *Engine) Run(ctx context.Context) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	if e.ran.Load() || !e.running.CompareAndSwap(false, true) {
		return errors.New("embedded: Run called twice")
	}
	defer func() { e.ran.Store(true); e.running.Store(false) }()
	e.sinks.Lock()
	sinks := e.sinks.list
	e.sinks.Unlock()
	depth := e.cfg.PipelineDepth
	e.commit = newCommitter(e, len(e.parts)*depth)
	e.commit.sinks = sinks
	e.committer.Store(e.commit)
	for _, p := range e.parts {
		p.free = make(chan *pending, depth)
		for range depth {
			p.free <- newPending(p)
		}
	}
	committed := make(chan struct{})
	go func() { defer close(committed); e.commit.run() }() // returns once in is closed and every group settled
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range e.parts {
		wg.Go(func() { p.run(stop) })
	}
	for _, p := range e.parts {
		p.setClosed(false)
	}
	e.accepting.Store(true)
	e.log.Info("embedded engine running", "partitions", len(e.parts), "pipeline_depth", depth)
	// Measure free space while idle too, so Ready recovers without traffic.
	diskTick := time.NewTicker(time.Second)
	defer diskTick.Stop()
	// Drop idempotency records past the window a few times per window.
	expireTick := time.NewTicker(max(e.cfg.IdempotencyWindow/8, time.Second))
	defer expireTick.Stop()
	e.expireIdem()
	// Snapshots: in the background, when the log moved (snapshot.go).
	var snapTick <-chan time.Time
	if e.cfg.SnapshotInterval > 0 {
		t := time.NewTicker(e.cfg.SnapshotInterval)
		defer t.Stop()
		snapTick = t.C
	}
	snapCtx, stopSnap := context.WithCancel(context.Background())
	defer stopSnap()
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-e.failCh:
			break wait
		case <-diskTick.C:
			e.checkDisk()
		case <-expireTick.C:
			e.expireIdem()
		case <-snapTick:
			e.snapshotDue(snapCtx)
		}
	}
	// Close the gates first: once every gate is closed no request can enter
	// an inbox, so the writers' final drain sees everything. Then the
	// committer drains what the writers handed it.
	e.accepting.Store(false)
	for _, p := range e.parts {
		p.setClosed(true)
	}
	close(stop)
	wg.Wait()
	close(e.commit.in)
	<-committed
	for _, p := range e.parts {
		for range depth {
			(<-p.free).batch.Close()
		}
	}
	stopSnap() // a periodic snapshot still running gives up
	e.snap.wg.Wait()
	if err := e.failure(); err != nil {
		return err
	}
	if e.cfg.SnapshotInterval > 0 && e.logMark() != e.snap.mark.Load() {
		// The next start then replays nothing.
		if _, err := e.Snapshot(context.Background()); err != nil {
			e.log.Error("final snapshot failed; the next start replays the log after the previous one", "err", err)
		}
	}
	e.log.Info("embedded engine stopped")
	return nil
}

// Close closes the store. Call it after Run returned (or without Run).
func (e *Engine) Close() error {
	if e.running.Load() {
		return errors.New("embedded: Close while Run is running")
	}
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	return e.db.Close()
}

// Ready returns nil while the engine accepts claims.
func (e *Engine) Ready() error {
	if err := e.failure(); err != nil {
		return err
	}
	if e.checkDisk() {
		return errDiskLow
	}
	if !e.accepting.Load() {
		return engine.ErrClosed
	}
	return nil
}

// Status reports each partition's last committed epoch, its decision time and inbox depth.
func (e *Engine) Status() []engine.Status {
	out := make([]engine.Status, len(e.parts))
	for i, p := range e.parts {
		st := engine.Status{Component: p.name, Depth: len(p.inbox),
			Epoch: hunt.Epoch{Partition: p.id, Seq: hunt.Seq(p.lastSeq.Load())}}
		if ns := p.lastAt.Load(); ns != 0 {
			st.At = time.Unix(0, ns).UTC()
		}
		out[i] = st
	}
	return out
}

// pebbleLogger routes Pebble's logs to slog. Pebble's Fatalf means the store
// cannot go on; it panics after logging instead of exiting the process.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("pebble: " + msg)
}
