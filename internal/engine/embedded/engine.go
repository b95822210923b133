// Package embedded is Cairn's default claim engine: one process, one Pebble
// store, one writer goroutine per log partition.
//
// Pipeline. A claim is checked, its hotspot looked up (unknown hunt or
// hotspot: an error, nothing recorded), its (player, key) reserved in the
// idempotency index, and offered to its partition's bounded inbox (full:
// engine.ErrOverloaded, and the reservation is undone). The partition's
// writer takes one request, drains up to BatchLenMax more without blocking,
// decides them in order with hunt.DecideClaim / hunt.DecideSpend against its
// own state (so the second claim of a single ticket in one batch is
// sold_out), writes their events into ONE Pebble batch, commits it synced,
// then publishes the new state, feeds the sinks and wakes the callers.
// Pebble groups the concurrent synced commits of all writers into shared WAL
// syncs. The store's key layout is documented at the top of store.go.
//
// Invariants. I1: a writer alone decides its hotspots, and imports clamp
// tickets to what is granted. I2: claimer sets live with the hotspot, owned by
// its writer. I3: (player, key) has one entry across all partitions;
// duplicates in flight wait for the first decision. I4: credits are added only
// once their grant is durable; a player's spends are serialized by one writer
// (the partition of hash(player)), which reserves by an atomic subtract of a
// balance that other partitions can only raise. I6: nobody is answered before
// the batch is synced. I7: memory is a cache; Open rebuilds it by folding the
// log, applying recorded outcomes without deciding again.
//
// Concurrency. Every exported method is safe for concurrent use. A
// partition's state (granted counts being decided, claimer sets, its seq) has
// no mutex: only its writer touches it. What others read (hotspot definitions,
// granted counts, epochs) is published through atomics after the batch that
// changed it is durable. Shared maps (idempotency, wallets, positions, the
// hotspot index) are sharded behind small mutexes.
//
// Lifecycle. Open loads the store; Hunts, Hunt, Hotspots, Nearby, Wallet,
// Ledger and Events work from then on (the offline verifier needs no Run),
// and PutHunt writes directly. Claim, Spend and ImportHotspots answer
// engine.ErrClosed until Run starts the writers and after it stops them. When
// Run's ctx is done, new calls get ErrClosed, the writers commit and answer
// every request already in their inboxes, and Run returns. Close then closes
// Pebble.
//
// Failure. If a commit fails (a Pebble error, or a FaultHook error in
// tests), memory may be ahead of disk, so the engine fails for good: every
// waiting and later Claim, Spend, ImportHotspots and PutHunt gets
// engine.ErrUnavailable, Ready returns the failure, and Run stops the writers
// and returns it (wrapping engine.ErrUnavailable), so that the process exits.
// Recovery is a restart: Open folds the log, which holds exactly the batches
// that committed. Reads keep answering from published (durable) state, except
// that a wallet may show a spend reservation whose batch failed.
package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
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
	cfg       Config
	prefixLen int
	db        *pebble.DB
	log       *slog.Logger
	metrics   *telemetry.Metrics
	parts     []*partition
	commit    *committer // set by Run

	hunts   huntRegistry
	slots   slotIndex
	idem    idemIndex
	pos     posIndex
	wallets walletIndex

	closedCh        chan struct{} // closed at Open: the done channel of every replayed entry
	shedOverloaded  prometheus.Counter
	shedUnavailable prometheus.Counter

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
	e := &Engine{
		cfg: cfg, prefixLen: m.PrefixLen, db: db, log: cfg.Logger, metrics: cfg.Metrics,
		closedCh:        make(chan struct{}),
		failCh:          make(chan struct{}),
		shedOverloaded:  cfg.Metrics.Shed.WithLabelValues("overloaded"),
		shedUnavailable: cfg.Metrics.Shed.WithLabelValues("unavailable"),
	}
	close(e.closedCh)
	e.diskMin.Store(cfg.DiskFreeMinBytes)
	empty := map[hunt.HuntID]*huntEntry{}
	e.hunts.snap.Store(&empty)
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
	start := time.Now()
	if err := e.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: load %s: %w", cfg.Dir, err)
	}
	e.log.Info("embedded store opened", "dir", cfg.Dir, "partitions", m.Partitions,
		"prefix_len", m.PrefixLen, "load", time.Since(start))
	return e, nil
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
		if low {
			e.log.Error("disk nearly full: refusing writes until space returns",
				"dir", e.cfg.Dir, "free_bytes", free, "min_bytes", min)
		} else {
			e.log.Info("disk space back: accepting writes", "dir", e.cfg.Dir, "free_bytes", free)
		}
	}
	return low
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
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-e.failCh:
			break wait
		case <-diskTick.C:
			e.checkDisk()
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
	if err := e.failure(); err != nil {
		return err
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

// ---- hunts and hotspots ----

// PutHunt creates or updates a hunt; it is written synced before it is visible.
func (e *Engine) PutHunt(ctx context.Context, h hunt.Hunt) error {
	if err := e.writable(); err != nil {
		return err
	}
	if err := h.Normalize(); err != nil {
		return err
	}
	b, err := json.Marshal(&h)
	if err != nil {
		return err
	}
	e.hunts.mu.Lock()
	defer e.hunts.mu.Unlock()
	if err := e.db.Set(huntKey(h.ID), b, pebble.Sync); err != nil {
		// Memory was not touched, so the engine has not failed.
		return fmt.Errorf("%w: put hunt %s: %v", engine.ErrUnavailable, h.ID, err)
	}
	if he := e.hunts.get(h.ID); he != nil {
		he.def.Store(&h)
		return nil
	}
	he := newHuntEntry(h.ID)
	he.def.Store(&h)
	old := *e.hunts.snap.Load()
	m := make(map[hunt.HuntID]*huntEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[h.ID] = he
	e.hunts.snap.Store(&m)
	return nil
}

// Hunt returns a hunt or hunt.ErrUnknownHunt.
func (e *Engine) Hunt(ctx context.Context, id hunt.HuntID) (hunt.Hunt, error) {
	he := e.hunts.get(id)
	if he == nil {
		return hunt.Hunt{}, hunt.ErrUnknownHunt
	}
	return *he.def.Load(), nil
}

// Hunts lists every hunt ordered by id.
func (e *Engine) Hunts(ctx context.Context) ([]hunt.Hunt, error) {
	list := e.hunts.list()
	out := make([]hunt.Hunt, len(list))
	for i, he := range list {
		out[i] = *he.def.Load()
	}
	return out, nil
}

// ImportHotspots upserts up to engine.ImportBatchMax hotspots of one hunt
// through their partitions' writers and returns once all are durable.
func (e *Engine) ImportHotspots(ctx context.Context, id hunt.HuntID, hs []hunt.Hotspot) error {
	if err := e.writable(); err != nil {
		return err
	}
	he := e.hunts.get(id)
	if he == nil {
		return hunt.ErrUnknownHunt
	}
	if len(hs) > engine.ImportBatchMax {
		return hunt.Invalid("hotspots", "at most %d per call", engine.ImportBatchMax)
	}
	if len(hs) == 0 {
		return nil
	}
	items := make([]importItem, len(hs))
	for i := range hs {
		def := hs[i]
		def.Hunt = id
		if err := def.Normalize(); err != nil {
			return fmt.Errorf("hotspot %d (%q): %w", i, def.ID, err)
		}
		items[i].def = def
	}
	byPart := make(map[geo.Partition][]importItem)
	for i := range items {
		it := items[i]
		it.slot = e.slots.getOrCreate(slotKey{id, it.def.ID}, func() *slot {
			return &slot{hunt: he, part: geo.PartitionOf(it.def.Geohash, e.prefixLen, len(e.parts))}
		})
		byPart[it.slot.part] = append(byPart[it.slot.part], it)
	}
	var sent []*request
	var err error
	for p, list := range byPart {
		r := &request{kind: reqImport, imp: list, impDone: make(chan error, 1)}
		if err = e.parts[p].send(ctx, r); err != nil {
			break
		}
		sent = append(sent, r)
	}
	// Whatever was sent will be committed; wait for it so the answer tells
	// the truth about what is durable.
	for _, r := range sent {
		select {
		case rerr := <-r.impDone:
			if err == nil {
				err = rerr
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// Hotspots calls fn for every published hotspot of a hunt.
func (e *Engine) Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error {
	he := e.hunts.get(id)
	if he == nil {
		return hunt.ErrUnknownHunt
	}
	for i, s := range he.all() {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fn(view(s)); err != nil {
			return err
		}
	}
	return nil
}

// view is a published slot as a HotspotView (granted is loaded before def,
// see partition.publish).
func view(s *slot) hunt.HotspotView {
	g := s.granted.Load()
	def := s.def.Load()
	return hunt.HotspotView{Hotspot: *def, TicketsLeft: max(def.Tickets-g, 0)}
}

// Nearby lists up to limit hotspots within radiusM of lat/lon, nearest first
// (ties by id). limit is capped at engine.NearbyLimitMax.
func (e *Engine) Nearby(ctx context.Context, id hunt.HuntID, lat, lon, radiusM float64, limit int) ([]hunt.HotspotView, error) {
	if !geo.ValidCoord(lat, lon) {
		return nil, hunt.Invalid("lat/lon", "must be finite, lat in [-90, 90], lon in [-180, 180]")
	}
	if math.IsNaN(radiusM) || radiusM <= 0 || radiusM > engine.NearbyRadiusMMax {
		return nil, hunt.Invalid("radius_m", "must be in (0, %d]", engine.NearbyRadiusMMax)
	}
	if limit <= 0 {
		return nil, hunt.Invalid("limit", "must be positive")
	}
	limit = min(limit, engine.NearbyLimitMax)
	he := e.hunts.get(id)
	if he == nil {
		return nil, hunt.ErrUnknownHunt
	}
	// Cells are chosen for a slightly larger radius so that cells narrowing
	// with latitude never leave a corner uncovered; the distance filter is exact.
	out := []hunt.HotspotView{}
	for _, s := range he.candidates(lat, lon, radiusM*1.1) {
		v := view(s)
		if d := geo.DistanceM(lat, lon, v.Lat, v.Lon); d <= radiusM {
			v.DistanceM = d
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DistanceM != out[j].DistanceM {
			return out[i].DistanceM < out[j].DistanceM
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ---- claims and spends ----

// Claim decides a claim and returns once its event is durable (see engine.Engine).
func (e *Engine) Claim(ctx context.Context, req *hunt.ClaimRequest) (hunt.ClaimResult, error) {
	if err := req.Check(); err != nil {
		return hunt.ClaimResult{}, err
	}
	if e.failure() != nil {
		e.shedUnavailable.Inc()
		return hunt.ClaimResult{}, engine.ErrUnavailable
	}
	s := e.slots.get(slotKey{req.Hunt, req.Hotspot})
	if s == nil || s.def.Load() == nil {
		if e.hunts.get(req.Hunt) == nil {
			return hunt.ClaimResult{}, hunt.ErrUnknownHunt
		}
		return hunt.ClaimResult{}, hunt.ErrUnknownHotspot
	}
	r := &request{kind: reqClaim, key: idemKey{req.Player, req.Key}, claim: *req, slot: s}
	ev, replayed, err := e.submit(ctx, e.parts[s.part], r, req.Fingerprint(), hunt.KindClaimCompleted)
	return hunt.ClaimResult{Event: ev, Replayed: replayed}, err
}

// Spend decides a spend on the partition that serializes the player's spends.
func (e *Engine) Spend(ctx context.Context, req *hunt.SpendRequest) (hunt.SpendResult, error) {
	if err := req.Check(); err != nil {
		return hunt.SpendResult{}, err
	}
	if e.failure() != nil {
		e.shedUnavailable.Inc()
		return hunt.SpendResult{}, engine.ErrUnavailable
	}
	p := e.parts[fnv32(fnv32Offset, string(req.Player))%uint32(len(e.parts))]
	r := &request{kind: reqSpend, key: idemKey{req.Player, req.Key}, spend: *req}
	ev, replayed, err := e.submit(ctx, p, r, req.Fingerprint(), hunt.KindSpendCompleted)
	return hunt.SpendResult{Event: ev, Replayed: replayed}, err
}

// submit applies the idempotency rules, then offers r to p and waits for its decision.
func (e *Engine) submit(ctx context.Context, p *partition, r *request, fp uint64, kind hunt.EventKind) (hunt.Event, bool, error) {
	fresh := &entry{fp: fp, kind: kind, done: make(chan struct{})}
	en, inserted := e.idem.getOrInsert(r.key, fresh)
	if !inserted {
		if en.fp != fp || en.kind != kind {
			return hunt.Event{}, false, hunt.ErrKeyReused
		}
		// A retry, or a duplicate while the first is in flight: both get the
		// first decision and never cause a second effect.
		select {
		case <-en.done:
		case <-ctx.Done():
			return hunt.Event{}, false, ctx.Err()
		}
		if en.err != nil {
			return hunt.Event{}, false, en.err
		}
		e.metrics.Replays.Inc()
		return en.event, true, nil
	}
	r.entry = fresh
	if err := p.offer(r); err != nil {
		e.idem.remove(r.key, fresh)
		fresh.err = err
		close(fresh.done)
		if errors.Is(err, engine.ErrOverloaded) {
			e.shedOverloaded.Inc()
		}
		return hunt.Event{}, false, err
	}
	select {
	case <-fresh.done:
	case <-ctx.Done():
		// The request stays in flight; a retry with the same key gets its decision.
		return hunt.Event{}, false, ctx.Err()
	}
	if fresh.err != nil {
		return hunt.Event{}, false, fresh.err
	}
	return fresh.event, false, nil
}

// Wallet returns the player's balance and the epoch of its latest change.
func (e *Engine) Wallet(ctx context.Context, player hunt.PlayerID) (hunt.Wallet, error) {
	out := hunt.Wallet{Player: player}
	if w := e.wallets.get(player); w != nil {
		w.mu.Lock()
		out.Balance, out.Epoch = w.balance.Load(), w.epoch
		w.mu.Unlock()
	}
	return out, nil
}

// Ledger returns up to limit (capped at engine.LedgerLimitMax) of the
// player's wallet changes, newest first, read from the l/ index.
func (e *Engine) Ledger(ctx context.Context, player hunt.PlayerID, limit int) ([]hunt.LedgerEntry, error) {
	if e.closed.Load() {
		return nil, engine.ErrClosed
	}
	if limit <= 0 {
		return nil, hunt.Invalid("limit", "must be positive")
	}
	limit = min(limit, engine.LedgerLimitMax)
	lo := ledgerPrefix(nil, player)
	it, err := e.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: upperBound(lo)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []hunt.LedgerEntry{}
	var ev hunt.Event
	for it.Last(); it.Valid() && len(out) < limit; it.Prev() {
		ek, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		v, closer, err := e.db.Get(ek)
		if err != nil {
			return nil, fmt.Errorf("%w: ledger key %x names event %x: %v", ErrCorrupt, it.Key(), ek, err)
		}
		err = hunt.DecodeEvent(v, &ev)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: key %x: %v", ErrCorrupt, ek, err)
		}
		out = append(out, ledgerEntry(&ev))
	}
	return out, it.Error()
}

// Events replays the committed log of every partition after the given seqs.
func (e *Engine) Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	var ev hunt.Event
	for _, p := range e.parts {
		var from hunt.Seq
		if int(p.id) < len(after) {
			from = after[p.id]
		}
		if from == math.MaxUint64 {
			continue
		}
		err := func() error {
			it, err := e.db.NewIterWithContext(ctx, &pebble.IterOptions{
				LowerBound: eventKey(nil, p.id, from+1), UpperBound: eventKey(nil, p.id+1, 0)})
			if err != nil {
				return err
			}
			defer it.Close()
			n := 0
			for valid := it.First(); valid; valid = it.Next() {
				if n++; n%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				v, err := it.ValueAndErr()
				if err != nil {
					return err
				}
				if err := hunt.DecodeEvent(v, &ev); err != nil {
					return fmt.Errorf("%w: key %x: %v", ErrCorrupt, it.Key(), err)
				}
				if err := fn(&ev); err != nil {
					return err
				}
			}
			return it.Error()
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- small helpers ----

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
