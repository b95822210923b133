package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Idempotency records: (player, Idempotency-Key) → the decision it got.
//
// Durable. Every decided request writes, in the same synced batch as its
// event, an i/ record naming the event (store.go has the layout). Records
// are filed under a bucket of the retention window (Config.IdempotencyWindow):
// bucket = decision time / window. A key is looked up in the current and the
// previous bucket and honoured while its decision is younger than the
// window; buckets older than that are dropped whole (one DeleteRange), so
// nothing ever deletes a record a writer may be writing.
//
// In memory, per shard (by hash of the key), under the shard's mutex:
//   - inflight: requests reserved and not yet answered. A duplicate waits on
//     the first one's done channel (I3 in flight).
//   - recent: a bounded cache of answered decisions (FIFO eviction), so a
//     client's retry is answered without IO.
//   - two Bloom filters, for the current and the previous bucket, over every
//     key recorded there. A key in neither filter was never decided within
//     the window: a fresh request costs no IO. A false positive costs two
//     point reads, never a wrong answer.
//
// A decision moves from inflight to recent and into the filter under one
// lock hold, after its batch is durable, so a key is always findable in
// memory or on disk from the moment its first answer is given.

type idemKey struct {
	player hunt.PlayerID
	key    string
}

// entry is the idempotency record of (player, key): in flight until done is
// closed, then event (or err, for a request that never committed) is final.
// Fields other than done are written before close(done) and read after it.
type entry struct {
	fp    uint64
	kind  hunt.EventKind
	done  chan struct{}
	event hunt.Event
	err   error
}

// Idempotency defaults.
const (
	IdempotencyWindowDefault = 24 * time.Hour
	// IdemCacheLenDefault bounds the decided records kept in memory.
	IdemCacheLenDefault = 1 << 16
	// IdemKeysExpectedDefault sizes the first Bloom filter of each window:
	// more keys add filters (bloomChain), so memory follows the keys
	// actually decided.
	IdemKeysExpectedDefault = 1_000_000
	idemFalsePositive       = 0.01
)

type idemShard struct {
	mu       sync.Mutex
	inflight map[idemKey]*entry
	recent   map[idemKey]*entry
	order    []idemKey     // FIFO of recent's keys, a ring
	next     int           // ring position of the oldest
	bucket   int64         // the bucket filters[0] covers
	filters  [2]bloomChain // [0]: the current bucket, [1]: the one before
	scratch  []byte
}

type idemIndex struct {
	shards   [shardCount]idemShard
	db       *pebble.DB
	window   time.Duration
	cacheLen int // per shard
	expected uint
	// restored is set when the filters come from a snapshot (snapshot.go):
	// they cover the keys of the events it covers, and replay adds the rest.
	restored bool
	// gone reports an event dropped from the log (retention.go).
	gone func(p geo.Partition, seq hunt.Seq) bool
}

func (x *idemIndex) init(db *pebble.DB, window time.Duration, cacheLen, keysExpected int) {
	x.db, x.window = db, window
	x.cacheLen = max(cacheLen/shardCount, 1)
	x.expected = uint(max(keysExpected/shardCount, 64))
	for i := range x.shards {
		sh := &x.shards[i]
		sh.inflight = make(map[idemKey]*entry)
		sh.recent = make(map[idemKey]*entry)
		sh.order = make([]idemKey, 0, x.cacheLen)
		sh.filters = [2]bloomChain{x.newChain(), x.newChain()}
	}
}

func (x *idemIndex) newChain() bloomChain { return newBloomChain(x.expected) }

// bloomChain is a scalable Bloom filter: when its last filter holds as many
// keys as it was sized for, a filter twice as big with half the
// false-positive rate is added, so the chain's rate stays under
// idemFalsePositive (1/2 + 1/4 + ... of it) and its memory follows the number
// of keys (about 1.2 to 2 bytes per key).
type bloomChain struct {
	filters []*bloom.BloomFilter
	n, cap  uint    // keys in the last filter, and what it was sized for
	fp      float64 // the last filter's false-positive rate
}

func newBloomChain(capacity uint) bloomChain {
	fp := idemFalsePositive / 2
	return bloomChain{filters: []*bloom.BloomFilter{bloom.NewWithEstimates(capacity, fp)}, cap: capacity, fp: fp}
}

func (c *bloomChain) add(key []byte) {
	if c.n >= c.cap {
		c.cap *= 2
		c.fp /= 2
		c.filters = append(c.filters, bloom.NewWithEstimates(c.cap, c.fp))
		c.n = 0
	}
	c.filters[len(c.filters)-1].Add(key)
	c.n++
}

func (c *bloomChain) test(key []byte) bool {
	for _, f := range c.filters {
		if f.Test(key) {
			return true
		}
	}
	return false
}

func (x *idemIndex) shard(k idemKey) *idemShard {
	return &x.shards[fnv32(fnv32(fnv32Offset, string(k.player)), k.key)%shardCount]
}

// bucketOf is the retention bucket of a decision time.
func (x *idemIndex) bucketOf(t time.Time) int64 {
	return t.UnixMilli() / x.window.Milliseconds()
}

// roll moves sh's filters forward to the bucket of now (caller holds sh.mu).
func (x *idemIndex) roll(sh *idemShard, now time.Time) {
	b := x.bucketOf(now)
	switch {
	case b == sh.bucket:
	case b == sh.bucket+1:
		sh.filters[1], sh.filters[0] = sh.filters[0], x.newChain()
		sh.bucket = b
	case b > sh.bucket:
		sh.filters = [2]bloomChain{x.newChain(), x.newChain()}
		sh.bucket = b
	}
}

func bloomKey(dst []byte, k idemKey) []byte {
	dst = append(dst, k.player...)
	dst = append(dst, 0)
	return append(dst, k.key...)
}

// reserve returns the record of k if one exists within the window (in
// flight, recent, or on disk: then with found set), or inserts fresh as k's
// in-flight record and returns it with found unset.
func (x *idemIndex) reserve(k idemKey, fresh *entry, now time.Time) (en *entry, found bool, err error) {
	sh := x.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if en := sh.inflight[k]; en != nil {
		return en, true, nil
	}
	cutoff := now.Add(-x.window)
	if en := sh.recent[k]; en != nil && !en.event.At.Before(cutoff) {
		return en, true, nil
	}
	x.roll(sh, now)
	sh.scratch = bloomKey(sh.scratch[:0], k)
	if sh.filters[0].test(sh.scratch) || sh.filters[1].test(sh.scratch) {
		en, err := x.read(k, sh.bucket, cutoff)
		if err != nil {
			return nil, false, err
		}
		if en != nil {
			x.remember(sh, k, en)
			return en, true, nil
		}
	}
	sh.inflight[k] = fresh
	return fresh, false, nil
}

// decided moves k's in-flight record en to the recent cache and the filter:
// its decision is durable (committer, after the group's sync).
func (x *idemIndex) decided(k idemKey, en *entry) {
	sh := x.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.inflight[k] == en {
		delete(sh.inflight, k)
	}
	x.roll(sh, en.event.At)
	if i := sh.bucket - x.bucketOf(en.event.At); i == 0 || i == 1 {
		sh.scratch = bloomKey(sh.scratch[:0], k)
		sh.filters[i].add(sh.scratch)
	}
	x.remember(sh, k, en)
}

// remove forgets k's in-flight record if it is still en (a request that
// never committed).
func (x *idemIndex) remove(k idemKey, en *entry) {
	sh := x.shard(k)
	sh.mu.Lock()
	if sh.inflight[k] == en {
		delete(sh.inflight, k)
	}
	sh.mu.Unlock()
}

// remember puts a decided record in the recent cache, evicting the oldest.
func (x *idemIndex) remember(sh *idemShard, k idemKey, en *entry) {
	if _, ok := sh.recent[k]; ok {
		sh.recent[k] = en
		return
	}
	if len(sh.order) < x.cacheLen {
		sh.order = append(sh.order, k)
	} else {
		delete(sh.recent, sh.order[sh.next])
		sh.order[sh.next] = k
		sh.next = (sh.next + 1) % len(sh.order)
	}
	sh.recent[k] = en
}

// noteLoaded adds a key found in the store on Open to the filter of its bucket.
func (x *idemIndex) noteLoaded(bk []byte, bucket int64) {
	player, key, _ := bytes.Cut(bk, []byte{0})
	sh := &x.shards[fnv32b(fnv32b(fnv32Offset, player), key)%shardCount] // = x.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := sh.bucket - bucket
	if i < 0 || i > 1 {
		return
	}
	sh.filters[i].add(bk)
}

// fnv32b is fnv32 over bytes.
func fnv32b(h uint32, b []byte) uint32 {
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// read looks k up on disk in bucket b and the one before it and returns its
// decision if it is not older than cutoff, or nil.
func (x *idemIndex) read(k idemKey, b int64, cutoff time.Time) (*entry, error) {
	var buf [64]byte
	for _, bk := range []int64{b, b - 1} {
		key := idemRecordKey(buf[:0], bk, k)
		v, closer, err := x.db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read idempotency record: %w", err)
		}
		p, seq, ok := decodeIdemRecord(v)
		closer.Close()
		if !ok {
			return nil, fmt.Errorf("%w: key %x: malformed idempotency record", ErrCorrupt, key)
		}
		if x.gone != nil && x.gone(p, seq) {
			// Dropped by the log's retention, which keeps every event of
			// the window: this decision is past it, so a new request.
			return nil, nil
		}
		ev, err := x.event(p, seq)
		if err != nil {
			return nil, err
		}
		if ev.Player != k.player || ev.Key != k.key {
			return nil, fmt.Errorf("%w: idempotency record %x names event %v of %s/%s", ErrCorrupt, key, ev.Epoch, ev.Player, ev.Key)
		}
		if ev.At.Before(cutoff) {
			return nil, nil // past the window: a new request
		}
		done := make(chan struct{})
		close(done)
		return &entry{fp: ev.Fingerprint, kind: ev.Kind, done: done, event: ev}, nil
	}
	return nil, nil
}

func (x *idemIndex) event(p geo.Partition, seq hunt.Seq) (hunt.Event, error) {
	var ev hunt.Event
	ek := eventKey(nil, p, seq)
	v, closer, err := x.db.Get(ek)
	if err != nil {
		return ev, fmt.Errorf("%w: idempotency record names event %x: %v", ErrCorrupt, ek, err)
	}
	defer closer.Close()
	if err := hunt.DecodeEvent(v, &ev); err != nil {
		return ev, fmt.Errorf("%w: key %x: %v", ErrCorrupt, ek, err)
	}
	return ev, nil
}

// idemRecordKey: i/<bucket u64 BE><player> 0x00 <key>.
func idemRecordKey(dst []byte, bucket int64, k idemKey) []byte {
	dst = append(dst, 'i', '/')
	dst = binary.BigEndian.AppendUint64(dst, uint64(bucket))
	dst = append(dst, k.player...)
	dst = append(dst, 0)
	return append(dst, k.key...)
}

// idemRecordValue: <partition u32 BE><seq u64 BE>, the event's epoch.
func idemRecordValue(dst []byte, e hunt.Epoch) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(e.Partition))
	return binary.BigEndian.AppendUint64(dst, uint64(e.Seq))
}

func decodeIdemRecord(v []byte) (geo.Partition, hunt.Seq, bool) {
	if len(v) != 12 {
		return 0, 0, false
	}
	return geo.Partition(binary.BigEndian.Uint32(v)), hunt.Seq(binary.BigEndian.Uint64(v[4:])), true
}

// resetFilters empties the filters and points them at the bucket of now (Open).
func (x *idemIndex) resetFilters(now time.Time) {
	cur := x.bucketOf(now)
	for i := range x.shards {
		sh := &x.shards[i]
		sh.bucket = cur
		sh.filters = [2]bloomChain{x.newChain(), x.newChain()}
	}
	x.restored = false
}

// loadIdem fills the filters from the records of the live buckets (Open,
// after resetFilters).
func (x *idemIndex) loadIdem(rd reader, now time.Time) error {
	cur := x.bucketOf(now)
	lo := idemRecordKey(nil, cur-1, idemKey{})[:10]
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte("i0")})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		// The key is "i/" <bucket u64> <player> 0x00 <key>: its tail is
		// the Bloom filters' own key, used in place (no allocation per record).
		k := it.Key()
		if len(k) < 2+8+2 || bytes.IndexByte(k[10:], 0) < 0 {
			return fmt.Errorf("%w: key %x: malformed idempotency record key", ErrCorrupt, k)
		}
		x.noteLoaded(k[10:], int64(binary.BigEndian.Uint64(k[2:10])))
	}
	return it.Error()
}

// expire drops every bucket older than the previous one of now (one
// DeleteRange; not synced: a crash before the next sync only keeps records
// that lookups ignore anyway).
func (x *idemIndex) expire(now time.Time) error {
	hi := idemRecordKey(nil, x.bucketOf(now)-1, idemKey{})[:10]
	return x.db.DeleteRange([]byte("i/"), hi, pebble.NoSync)
}
