package embedded

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Defaults and hard limits of Config. Limits keep a typo in a flag from
// allocating gigabytes of channel buffers.
const (
	InboxLenDefault = 4096
	BatchLenDefault = 512
	InboxLenLimit   = 1 << 20
	// PipelineDepthDefault lets a writer decide while its previous batch is
	// being synced, and once more while a whole group is.
	PipelineDepthDefault = 4
	PipelineDepthLimit   = 64
	BatchLenLimit        = 1 << 16
	// DiskFreeMinDefault is the free space below which writes are refused
	// (see Config.DiskFreeMinBytes): more than Pebble's next WAL and flush need.
	DiskFreeMinDefault = 256 << 20
	// SnapshotIntervalDefault bounds the log a restart replays to what ten
	// minutes add.
	SnapshotIntervalDefault = 10 * time.Minute
)

// Fault points passed to Config.FaultHook.
const (
	FaultMidBatch     = "mid-batch"     // a partition writer, after each request of a batch is decided
	FaultBeforeCommit = "before-commit" // the committer: a group is built, nothing of it is durable
	FaultAfterCommit  = "after-commit"  // the committer: the group is durable, nothing published or answered
	FaultBeforeAnswer = "before-answer" // the committer: published and delivered to sinks, callers not yet woken
	// FaultSnapshotWrite: a snapshot file is half written (snapshot.go).
	FaultSnapshotWrite = "snapshot-write"
	// FaultTruncate: the log's new start is recorded, nothing of it deleted yet (retention.go).
	FaultTruncate = "truncate"
)

// FaultPoints lists every Fault* point. A new point is a constant above, one
// e.hook(point) call where the engine reaches it, and an entry here: the
// test hooks of `cairn serve` (cmd/cairn/faulthook.go, built only with the
// cairnfault tag) accept every point in this list, with no change there.
var FaultPoints = []string{FaultMidBatch, FaultBeforeCommit, FaultAfterCommit, FaultBeforeAnswer, FaultSnapshotWrite, FaultTruncate}

// ErrConfig wraps every problem Validate reports.
var ErrConfig = errors.New("invalid embedded engine config")

// Config configures Open. The zero value of every field but Dir is a usable default.
type Config struct {
	// Dir is the Pebble directory (created if missing).
	Dir string
	// Partitions is the number of log partitions. It is stored on first open;
	// zero means "what the store says, or geo.PartitionsDefault for a new store";
	// a non-zero value that differs from the stored one is an error (ErrLayout).
	Partitions int
	// PrefixLen is the geohash prefix length that picks a new hotspot's
	// partition; stored and checked like Partitions (default geo.PrefixLenDefault).
	PrefixLen int
	// InboxLenMax bounds each partition's inbox; a full inbox answers
	// engine.ErrOverloaded (default InboxLenDefault).
	InboxLenMax int
	// PipelineDepth is how many batches of one partition may be decided
	// ahead of the durable one: at most this many are with the committer at
	// once (default PipelineDepthDefault; 1 = decide the next batch only
	// after the previous one is durable and answered).
	PipelineDepth int
	// BatchLenMax bounds the requests decided and committed in one batch (default BatchLenDefault).
	BatchLenMax int
	// DiskFreeMinBytes: while the store's file system has less free space
	// than this, writes are refused with engine.ErrUnavailable (503) before
	// anything is decided, and Ready fails; they resume by themselves when
	// space returns. Pebble treats a failed WAL write as fatal, so refusing
	// early is what keeps a full disk an outage instead of a crash loop.
	// Zero means DiskFreeMinDefault; negative turns the check off.
	DiskFreeMinBytes int64
	// IdempotencyWindow is how long a decided (player, Idempotency-Key) is
	// honoured: a retry within it gets the first decision back; past it the
	// key is a new request (default IdempotencyWindowDefault).
	IdempotencyWindow time.Duration
	// IdemCacheLenMax bounds the decided idempotency records kept in memory;
	// older ones are read from the store (default IdemCacheLenDefault).
	IdemCacheLenMax int
	// IdemKeysExpected sizes the first idempotency Bloom filter of each
	// window (default IdemKeysExpectedDefault, about 1.4 MB for two windows);
	// more keys add filters, at about 1.2 to 2 bytes per key.
	IdemKeysExpected int
	// SnapshotInterval is how often Run writes a snapshot of the state, when
	// the log has moved since the last (snapshot.go); Run also writes one
	// as it stops. Zero means SnapshotIntervalDefault; negative turns
	// periodic and final snapshots off (Snapshot still writes one).
	SnapshotInterval time.Duration
	// LogRetention: once a snapshot is older than this and than the
	// idempotency window, the log before it is dropped, except the newest
	// snapshot's fallback (retention.go). Zero keeps the whole log.
	LogRetention time.Duration
	// Clock gives the time of decisions, read once per batch (default time.Now).
	Clock func() time.Time
	// Logger receives lifecycle and failure logs, never per-request ones (default: discard).
	Logger *slog.Logger
	// Metrics receives batch, commit and outcome metrics (default telemetry.Discard()).
	Metrics *telemetry.Metrics
	// FaultHook is for tests only: it is called from a partition writer at the
	// Fault* points; a non-nil error is treated as a commit failure. nil in production.
	FaultHook func(point string) error
}

// Validate reports every problem of c at once (errors.Join), each wrapping ErrConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if c.Dir == "" {
		bad("dir is required")
	}
	if c.Partitions < 0 || c.Partitions > geo.PartitionsMax {
		bad("partitions %d not in [1, %d] (0 = default)", c.Partitions, geo.PartitionsMax)
	}
	if c.PrefixLen < 0 || c.PrefixLen > geo.PrefixLenMax {
		bad("prefix length %d not in [1, %d] (0 = default)", c.PrefixLen, geo.PrefixLenMax)
	}
	if c.InboxLenMax < 0 || c.InboxLenMax > InboxLenLimit {
		bad("inbox length %d not in [1, %d] (0 = default)", c.InboxLenMax, InboxLenLimit)
	}
	if c.LogRetention < 0 {
		bad("log retention %v is negative (0 = keep everything)", c.LogRetention)
	}
	if c.IdempotencyWindow < 0 || (c.IdempotencyWindow > 0 && c.IdempotencyWindow < time.Second) {
		bad("idempotency window %v not at least 1s (0 = default)", c.IdempotencyWindow)
	}
	if c.IdemCacheLenMax < 0 || c.IdemCacheLenMax > 1<<24 {
		bad("idempotency cache length %d not in [1, %d] (0 = default)", c.IdemCacheLenMax, 1<<24)
	}
	if c.IdemKeysExpected < 0 || c.IdemKeysExpected > 1<<30 {
		bad("idempotency keys expected %d not in [1, %d] (0 = default)", c.IdemKeysExpected, 1<<30)
	}
	if c.PipelineDepth < 0 || c.PipelineDepth > PipelineDepthLimit {
		bad("pipeline depth %d not in [1, %d] (0 = default)", c.PipelineDepth, PipelineDepthLimit)
	}
	if c.BatchLenMax < 0 || c.BatchLenMax > BatchLenLimit {
		bad("batch length %d not in [1, %d] (0 = default)", c.BatchLenMax, BatchLenLimit)
	}
	return errors.Join(errs...)
}

// withDefaults fills every zero field except Partitions and PrefixLen, which
// are settled against the store's meta record in Open.
func (c Config) withDefaults() Config {
	c.InboxLenMax = cmp.Or(c.InboxLenMax, InboxLenDefault)
	c.IdempotencyWindow = cmp.Or(c.IdempotencyWindow, IdempotencyWindowDefault)
	c.IdemCacheLenMax = cmp.Or(c.IdemCacheLenMax, IdemCacheLenDefault)
	c.IdemKeysExpected = cmp.Or(c.IdemKeysExpected, IdemKeysExpectedDefault)
	c.PipelineDepth = cmp.Or(c.PipelineDepth, PipelineDepthDefault)
	c.BatchLenMax = cmp.Or(c.BatchLenMax, BatchLenDefault)
	c.DiskFreeMinBytes = cmp.Or(c.DiskFreeMinBytes, DiskFreeMinDefault)
	c.SnapshotInterval = cmp.Or(c.SnapshotInterval, SnapshotIntervalDefault)
	// Defaults that must be built (a logger, metrics) are built only when
	// missing; a func (Clock) is not comparable.
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Discard()
	}
	return c
}
