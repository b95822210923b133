// Package engine is the contract every Cairn claim engine keeps, and the
// errors they share. Package enginetest holds the one conformance suite that
// every implementation (embedded, redis) must pass.
//
// Ownership and ordering: an Engine owns all state; callers pass requests by
// pointer and must not change them until the call returns. Every method is
// safe for concurrent use. Within a partition, events are committed, delivered
// to sinks and replayed in strictly increasing Seq order.
package engine

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Errors every engine uses for operating conditions; domain errors live in hunt.
var (
	// ErrOverloaded: a bounded inbox is full. Callers answer 429 with Retry-After.
	ErrOverloaded = errors.New("engine overloaded")
	// ErrUnavailable: the store cannot commit (disk full, fsync failed, Redis down).
	// Nothing was acknowledged. Callers answer 503.
	ErrUnavailable = errors.New("engine unavailable")
	// ErrClosed: the engine is shutting down.
	ErrClosed = errors.New("engine closed")
	// ErrNotSupported: this store does not offer the operation. Callers answer 501.
	ErrNotSupported = errors.New("not supported by this store")
)

// Snapshotter is implemented by a store that writes snapshots of its
// folded state (the embedded store), so that a restart replays only the
// log after the newest one.
type Snapshotter interface {
	Snapshot(ctx context.Context) (SnapshotInfo, error)
}

// Based is implemented by a store whose log may have been truncated at a
// snapshot (the embedded store with --log-retention). LogBase calls fn with
// what the dropped prefix folded to: one granted ClaimCompleted per grant
// (epoch seq 0) and one SpendCompleted per player of what it spent before;
// Events then continues after the returned seqs. after is nil when the log
// is whole (fn is not called). Folds of the log (the audit, the
// leaderboard) start from it.
type Based interface {
	LogBase(ctx context.Context, fn func(*hunt.Event) error) (after []hunt.Seq, at time.Time, err error)
}

// SnapshotInfo describes a snapshot written.
type SnapshotInfo struct {
	Name     string    `json:"name"`
	Events   uint64    `json:"events"` // events it covers, summed over partitions
	Hotspots uint32    `json:"hotspots"`
	Grants   uint64    `json:"grants"`
	Bytes    int64     `json:"bytes"`
	Digest   string    `json:"digest"` // the fold's digest, hex
	TookMs   int64     `json:"took_ms"`
	Created  time.Time `json:"created"`
}

// RetryAfter is the hint sent with ErrOverloaded and ErrUnavailable answers.
const RetryAfter = time.Second

// ImportBatchMax bounds one ImportHotspots call; callers stream larger imports in chunks.
const ImportBatchMax = 4096

// NearbyLimitMax bounds Nearby's answer; NearbyRadiusMMax its radius.
const (
	NearbyLimitMax   = 1000
	NearbyRadiusMMax = 50_000
	LedgerLimitMax   = 1000
)

// Sink receives every committed batch of a partition, after it is durable and
// before its callers are answered. It is called from the partition's own
// goroutine, in Seq order, and must not block for long or keep batch (copy
// what it needs). The same batch may be delivered again after a restart or a
// replay; sinks dedupe by Seq (a watermark).
type Sink interface {
	Committed(p geo.Partition, batch []hunt.Event)
}

// TracedSink is a Sink that takes part in tracing: a batch that holds
// sampled requests is delivered through CommittedTraced instead of
// Committed, with the spans of those requests (the sink records its own work
// on the batch as a child span of each; see telemetry.ChildAt). The same
// rules as Committed apply; spans is the caller's: copy it to keep it.
type TracedSink interface {
	Sink
	CommittedTraced(p geo.Partition, batch []hunt.Event, spans []trace.Span)
}

// Status is one component's view for /v1/consistency.
type Status struct {
	Component string     `json:"component"` // e.g. "partition/17"
	Epoch     hunt.Epoch `json:"epoch"`     // last committed
	At        time.Time  `json:"at"`        // when it was committed (zero: nothing yet)
	Depth     int        `json:"inbox_depth"`
}

// Engine decides and records claims and spends. See the package doc for
// ownership and ordering rules.
type Engine interface {
	// PutHunt creates or updates a hunt (validated by the caller with Normalize).
	PutHunt(ctx context.Context, h hunt.Hunt) error
	// Hunt returns a hunt or hunt.ErrUnknownHunt.
	Hunt(ctx context.Context, id hunt.HuntID) (hunt.Hunt, error)
	// ImportHotspots upserts at most ImportBatchMax normalized hotspots of one
	// hunt, durably. It never lowers a hotspot's tickets below what it has
	// already granted (it clamps them). hunt.ErrUnknownHunt if the hunt is missing.
	ImportHotspots(ctx context.Context, id hunt.HuntID, hs []hunt.Hotspot) error
	// Hunts lists every hunt, ordered by id.
	Hunts(ctx context.Context) ([]hunt.Hunt, error)
	// Hotspots calls fn for every hotspot of a hunt with its tickets left
	// (DistanceM is zero), in no particular order; fn must not keep the value's
	// pointers. hunt.ErrUnknownHunt if the hunt is missing.
	Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error
	// Nearby lists up to limit hotspots within radiusM of lat/lon, nearest first.
	Nearby(ctx context.Context, id hunt.HuntID, lat, lon, radiusM float64, limit int) ([]hunt.HotspotView, error)

	// Claim validates req with hunt.ClaimRequest.Check (its errors, unchanged,
	// before anything else: nothing is recorded), decides it, and returns once
	// its event is durable.
	// The same (player, key) with the same fingerprint returns the first
	// decision with Replayed set, even when the first is still in flight;
	// another fingerprint is hunt.ErrKeyReused. Unknown hunt or hotspot are
	// errors and record nothing.
	Claim(ctx context.Context, req *hunt.ClaimRequest) (hunt.ClaimResult, error)
	// Spend validates req with hunt.SpendRequest.Check and decides it (same idempotency rules as Claim; keys are
	// shared between claims and spends of one player).
	Spend(ctx context.Context, req *hunt.SpendRequest) (hunt.SpendResult, error)
	// Wallet returns the player's balance (zero for an unknown player).
	Wallet(ctx context.Context, player hunt.PlayerID) (hunt.Wallet, error)
	// Ledger returns up to limit of the player's wallet changes, newest first.
	Ledger(ctx context.Context, player hunt.PlayerID, limit int) ([]hunt.LedgerEntry, error)

	// RevokeTokens records durably that the player's tokens issued before
	// `before` are refused. Revocations keep the latest time per player: a
	// call with an earlier time than the recorded one changes nothing.
	RevokeTokens(ctx context.Context, player hunt.PlayerID, before time.Time) error
	// Revocations calls fn for every player with a revocation, in no
	// particular order, with the recorded time (millisecond precision).
	Revocations(ctx context.Context, fn func(player hunt.PlayerID, before time.Time) error) error

	// Partitions is the number of log partitions.
	Partitions() int
	// Events replays the committed log: for every partition p, the events with
	// Seq > after[p] (after may be nil or shorter: missing entries are 0), in
	// Seq order per partition. fn must not keep the *Event.
	Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error
	// Subscribe adds a sink for committed batches. Call before Run.
	Subscribe(s Sink)
	// Status reports each partition writer's last committed epoch.
	Status() []Status
	// Ready reports whether the engine accepts claims now.
	Ready() error

	// Run processes claims until ctx is done, then finishes the batches in
	// flight and returns. Calls made before Run block or fail with ErrClosed.
	Run(ctx context.Context) error
	// Close releases the store. Call after Run returned.
	Close() error
}
