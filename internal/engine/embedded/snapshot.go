package embedded

// Snapshots: the folded state at one point of the log, in one file, so that
// Open loads it and replays only the log after it instead of the whole log.
//
// What a snapshot holds: the hotspot table (definitions, granted counts,
// ids, opening windows), each hunt's spatial index as one sorted run, each
// partition's seq, import counter, interned players and grant set, the
// wallets, the last positions and the idempotency Bloom filters, with a
// header naming the seq each partition's state covers and a digest of the
// fold (foldDigest). It is what Open would rebuild from the log up to those
// seqs, and nothing else: the log stays the truth (I7).
//
// How one is made, without stopping the writers: take a Pebble snapshot
// (a consistent view: every group is one atomic write), wait until every
// group that view can hold is synced (committer.applied/durable), then
// build the state of that view in a separate engine, the builder, with the
// same load Open uses (the previous snapshot plus the log after it, or the
// whole log), and write it out. The live engine is never read, so nothing
// needs a lock or a pause; the price is the builder's memory (about the
// size of the live state) and CPU while it runs.
//
// Definitions are not events: an import writes s/ keys. So that a start
// from a snapshot reloads only the definitions written after it, every
// definition written also gets an import-journal key j/ numbered by its
// partition's import batch (store.go); the snapshot records each
// partition's last batch.
//
// The file: snapshots/snap-<n, 16 hex digits>.cairn, written as .tmp,
// synced, renamed and the directory synced, so a crash leaves either no
// file or a whole one (a stale .tmp is removed by the next snapshot). It
// ends with an xxhash64 of everything before it; a file that fails the
// check, or does not decode, or does not fit the log, is skipped with a log
// line and the previous one is tried, then the whole log. The newest
// snapKeep files are kept.
//
// Layout (little-endian): "CAIRNSNP", u32 version, u32 n + the header as
// JSON (snapHeader), then the sections in the order writeSnapshot writes
// them, then u64 xxhash64 of all the bytes before it and "CAIRNEND".

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

const (
	snapDirName = "snapshots"
	snapMagic   = "CAIRNSNP"
	snapEnd     = "CAIRNEND"
	snapVersion = 1
	// snapKeep is how many snapshot files are kept: the newest, and one to
	// fall back on should it be unreadable.
	snapKeep = 2
	// snapHeaderMax bounds the JSON header (a few numbers per partition).
	snapHeaderMax = 1 << 20
)

// errSnapshotUnusable marks a snapshot that Open skips (the previous one,
// or the log, is used instead).
var errSnapshotUnusable = errors.New("snapshot unusable")

// snapHeader is the JSON header of a snapshot file.
type snapHeader struct {
	Version    int      `json:"version"`
	Partitions int      `json:"partitions"`
	PrefixLen  int      `json:"prefix_len"`
	CreatedMs  int64    `json:"created_ms"`
	Seqs       []uint64 `json:"seqs"`    // per partition: the last event the state covers
	Imports    []uint64 `json:"imports"` // per partition: the last import batch it covers
	// Last is, per partition, the xxhash64 of the stored last event it
	// covers: a snapshot only fits the very log it was made from.
	Last     []uint64 `json:"last"`
	Hotspots uint32   `json:"hotspots"`
	Grants   uint64   `json:"grants"`
	Wallets  int      `json:"wallets"`
	Digest   uint64   `json:"digest"` // foldDigest of the state
}

// snapFile is one snapshot file on disk whose checksum has been checked.
type snapFile struct {
	path string
	no   uint64
	size int64
	hdr  snapHeader
}

func (s *snapFile) name() string { return filepath.Base(s.path) }

// SnapshotInfo describes a snapshot written.
type SnapshotInfo = engine.SnapshotInfo

func (s *snapFile) info() SnapshotInfo {
	var n uint64
	for _, q := range s.hdr.Seqs {
		n += q
	}
	return SnapshotInfo{Name: s.name(), Events: n, Hotspots: s.hdr.Hotspots, Grants: s.hdr.Grants, Bytes: s.size,
		Digest: strconv.FormatUint(s.hdr.Digest, 16), Created: time.UnixMilli(s.hdr.CreatedMs).UTC()}
}

// snapState is the engine's snapshot bookkeeping.
type snapState struct {
	mu       sync.Mutex // one snapshot at a time
	building bool       // this engine is a builder: no spatial index, no writers
	upTo     []hunt.Seq // when set, replay stops at these seqs (CheckSnapshots)
	loaded   string     // the file Open started from; "" = the whole log
	// mark is the log position (Σ seqs + Σ imports) of the last snapshot
	// written or loaded: the periodic snapshot skips an unchanged log.
	mark atomic.Uint64
	wg   sync.WaitGroup // the background snapshot of Run
}

func snapDir(dir string) string { return filepath.Join(dir, snapDirName) }

// listSnapshots returns the snapshot files of dir, newest first (their
// checksums are not checked yet).
func listSnapshots(dir string) ([]snapFile, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []snapFile
	for _, de := range ents {
		name := de.Name()
		hex, ok := strings.CutPrefix(name, "snap-")
		if !ok || !strings.HasSuffix(hex, ".cairn") {
			continue
		}
		no, err := strconv.ParseUint(strings.TrimSuffix(hex, ".cairn"), 16, 64)
		if err != nil {
			continue
		}
		out = append(out, snapFile{path: filepath.Join(dir, name), no: no})
	}
	slices.SortFunc(out, func(a, b snapFile) int { return cmp.Compare(b.no, a.no) })
	return out, nil
}

// snapNo is the number in a snapshot file's name (0 if it has none).
func snapNo(name string) uint64 {
	hex, _ := strings.CutPrefix(name, "snap-")
	n, _ := strconv.ParseUint(strings.TrimSuffix(hex, ".cairn"), 16, 64)
	return n
}

// check verifies s's checksum and reads its header.
func (s *snapFile) check() error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	s.size = st.Size()
	tail := int64(8 + len(snapEnd))
	if s.size < int64(len(snapMagic))+8+tail {
		return fmt.Errorf("%w: %s: %d bytes: too short (torn?)", errSnapshotUnusable, s.name(), s.size)
	}
	h := xxhash.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, s.size-tail)); err != nil {
		return err
	}
	var end [8 + len(snapEnd)]byte
	if _, err := f.ReadAt(end[:], s.size-tail); err != nil {
		return err
	}
	if string(end[8:]) != snapEnd || binary.LittleEndian.Uint64(end[:8]) != h.Sum64() {
		return fmt.Errorf("%w: %s: checksum does not match (corrupt or torn)", errSnapshotUnusable, s.name())
	}
	d := newSnapReader(io.NewSectionReader(f, 0, s.size-tail), s.size-tail)
	return d.header(&s.hdr)
}

// ---- loading ----

// snapReader decodes a snapshot; the first error sticks and later reads
// return zeros. left bounds every length read, so a bad count cannot
// allocate more than the file holds.
type snapReader struct {
	r    *bufio.Reader
	left int64
	buf  []byte
	err  error
}

func newSnapReader(r io.Reader, size int64) *snapReader {
	return &snapReader{r: bufio.NewReaderSize(r, 1<<20), left: size}
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errSnapshotUnusable}, args...)...)
	}
}

// bytes reads n bytes into a buffer valid until the next call.
func (d *snapReader) bytes(n int64) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.left {
		d.fail("a length of %d bytes runs past the end of the file", n)
		return nil
	}
	if int64(cap(d.buf)) < n {
		d.buf = make([]byte, n)
	}
	b := d.buf[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail("read: %v", err)
		return nil
	}
	d.left -= n
	return b
}

// skip reads past n bytes.
func (d *snapReader) skip(n int64) {
	if d.err != nil {
		return
	}
	if n < 0 || n > d.left {
		d.fail("a length of %d bytes runs past the end of the file", n)
		return
	}
	if _, err := d.r.Discard(int(n)); err != nil {
		d.fail("read: %v", err)
		return
	}
	d.left -= n
}

func (d *snapReader) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *snapReader) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *snapReader) i64() int64 { return int64(d.u64()) }

func (d *snapReader) f64() float64 { return math.Float64frombits(d.u64()) }

// str reads a u16 length and that many bytes.
func (d *snapReader) str() string {
	b := d.bytes(2)
	if b == nil {
		return ""
	}
	return string(d.bytes(int64(binary.LittleEndian.Uint16(b))))
}

// count reads a u32 count of items of at least elem bytes each.
func (d *snapReader) count(elem int64) int {
	n := int64(d.u32())
	if n*elem > d.left {
		d.fail("a count of %d runs past the end of the file", n)
		return 0
	}
	return int(n)
}

func (d *snapReader) header(h *snapHeader) error {
	if m := d.bytes(int64(len(snapMagic))); d.err == nil && string(m) != snapMagic {
		d.fail("not a snapshot file")
	}
	if v := d.u32(); d.err == nil && v != snapVersion {
		d.fail("version %d, this build reads %d", v, snapVersion)
	}
	n := int64(d.u32())
	if n > snapHeaderMax {
		d.fail("header of %d bytes", n)
	}
	b := d.bytes(n)
	if d.err != nil {
		return d.err
	}
	if err := json.Unmarshal(b, h); err != nil {
		return fmt.Errorf("%w: header: %v", errSnapshotUnusable, err)
	}
	if len(h.Seqs) != h.Partitions || len(h.Imports) != h.Partitions || len(h.Last) != h.Partitions {
		return fmt.Errorf("%w: header: %d seqs and %d import counts for %d partitions", errSnapshotUnusable, len(h.Seqs), len(h.Imports), h.Partitions)
	}
	return nil
}

// loadSnapshot loads s (checked) into e, which is empty; hunts are the
// store's, by id.
func (e *Engine) loadSnapshot(s *snapFile, hunts []*hunt.Hunt) error {
	h := &s.hdr
	if h.Partitions != len(e.parts) || h.PrefixLen != e.prefixLen {
		return fmt.Errorf("%w: %s has %d partitions and prefix length %d; the store %d and %d",
			errSnapshotUnusable, s.name(), h.Partitions, h.PrefixLen, len(e.parts), e.prefixLen)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("%w: %v", errSnapshotUnusable, err)
	}
	defer f.Close()
	d := newSnapReader(f, s.size-int64(8+len(snapEnd)))
	var hdr snapHeader
	if err := d.header(&hdr); err != nil {
		return err
	}
	if err := e.readSnapHunts(d, hunts); err != nil {
		return err
	}
	e.readSnapWindows(d)
	e.readSnapHotspots(d, h.Hotspots)
	e.readSnapLookup(d)
	e.readSnapSpatial(d)
	for _, p := range e.parts {
		p.readSnap(d, h.Seqs[p.id], h.Imports[p.id])
		p.lastHash = h.Last[p.id]
	}
	e.readSnapWallets(d)
	e.readSnapPositions(d)
	e.idem.readSnap(d, e.now())
	if d.err != nil {
		return fmt.Errorf("%s: %w", s.name(), d.err)
	}
	if d.left != 0 {
		return fmt.Errorf("%w: %s: %d bytes left after the last section", errSnapshotUnusable, s.name(), d.left)
	}
	e.snap.loaded = s.name()
	return nil
}

func (e *Engine) readSnapHunts(d *snapReader, hunts []*hunt.Hunt) error {
	byID := make(map[hunt.HuntID]*hunt.Hunt, len(hunts))
	for _, h := range hunts {
		byID[h.ID] = h
	}
	n := d.count(3)
	for range n {
		id := hunt.HuntID(d.str())
		if d.err != nil {
			return d.err
		}
		h := byID[id]
		if h == nil {
			return fmt.Errorf("%w: hunt %q is not in the store", errSnapshotUnusable, id)
		}
		delete(byID, id)
		e.hunts.add(h)
	}
	for _, h := range hunts { // created after the snapshot
		if byID[h.ID] != nil {
			e.hunts.add(h)
		}
	}
	return d.err
}

func (e *Engine) readSnapWindows(d *snapReader) {
	t := &e.spots
	n := d.count(16)
	ws := make([]window, 0, n)
	for range n {
		ws = append(ws, window{d.i64(), d.i64()})
	}
	if d.err != nil {
		return
	}
	if n == 0 || ws[0] != (window{}) {
		d.fail("window table does not start with the unbounded window")
		return
	}
	t.windows.Store(&ws)
	t.windowOf = make(map[window]uint32, n)
	for i, w := range ws {
		t.windowOf[w] = uint32(i)
	}
}

func (e *Engine) readSnapHotspots(d *snapReader, n uint32) {
	t := &e.spots
	hunts := uint32(len(*e.hunts.byOrd.Load()))
	windows := uint32(len(*t.windows.Load()))
	var col [7][]uint32
	hs := make([]uint32, chunkLen)
	parts := make([]uint16, chunkLen)
	lens := make([]uint8, chunkLen)
	for base := uint32(0); base < n && d.err == nil; base += chunkLen {
		m := min(n-base, chunkLen)
		b := d.bytes(int64(m) * 4)
		for k := range m {
			hs[k] = binary.LittleEndian.Uint32(b[k*4:])
		}
		b = d.bytes(int64(m) * 2)
		for k := range m {
			parts[k] = binary.LittleEndian.Uint16(b[k*2:])
		}
		copy(lens, d.bytes(int64(m)))
		var idBytes int64
		for k := range m {
			idBytes += int64(lens[k])
		}
		ids := slices.Clone(d.bytes(idBytes))
		for c := range col {
			b := d.bytes(int64(m) * 4)
			if d.err != nil {
				return
			}
			col[c] = slices.Grow(col[c][:0], int(m))[:m]
			for k := range m {
				col[c][k] = binary.LittleEndian.Uint32(b[k*4:])
			}
		}
		if d.err != nil {
			return
		}
		off := 0
		for k := range m {
			id := ids[off : off+int(lens[k])]
			off += int(lens[k])
			lat, lon := int32(col[0][k]), int32(col[1][k])
			def := spotDef{lat: lat, lon: lon, tickets: col[2][k], reward: col[3][k], points: col[4][k], window: col[5][k]}
			granted := col[6][k]
			if hs[k] >= hunts || int(parts[k]) >= len(e.parts) || def.window == 0 || def.window > windows ||
				!hunt.ValidID(string(id)) || !geo.ValidCoord(geo.FromE7(lat), geo.FromE7(lon)) ||
				int64(def.tickets) > hunt.TicketsMax || int64(def.reward) > hunt.RewardMax ||
				int64(def.points) > hunt.PointsMax || granted > def.tickets {
				d.fail("hotspot %d is out of range", base+k)
				return
			}
			t.load(hs[k], id, geo.Partition(parts[k]), def, granted)
		}
	}
}

// readSnapLookup reads the (hunt, id) lookup table as it was: rebuilding it
// was half of a big snapshot's load (a cache miss per hotspot). Each index
// must be in it exactly once.
func (e *Engine) readSnapLookup(d *snapReader) {
	t := &e.spots
	n := t.len()
	size := int(d.u32())
	if d.err != nil {
		return
	}
	if size < 1024 || size&(size-1) != 0 || size < int(n+1)*2 || int64(size)*4 > d.left {
		d.fail("lookup table of %d slots for %d hotspots", size, n)
		return
	}
	lk := make([]atomic.Uint32, size)
	raw := unsafe.Slice((*uint32)(unsafe.Pointer(&lk[0])), size) // nothing reads lk before Open returns
	seen := make([]uint64, (n+64)/64)
	for off := 0; off < size && d.err == nil; {
		k := min(size-off, 1<<14)
		b := d.bytes(int64(k) * 4)
		if b == nil {
			return
		}
		for j := range k {
			v := binary.LittleEndian.Uint32(b[j*4:])
			if v != 0 {
				if v > n || seen[(v-1)/64]&(1<<((v-1)%64)) != 0 {
					d.fail("lookup table names hotspot %d twice or out of range", v-1)
					return
				}
				seen[(v-1)/64] |= 1 << ((v - 1) % 64)
			}
			raw[off+j] = v
		}
		off += k
	}
	for i := range n {
		if seen[i/64]&(1<<(i%64)) == 0 {
			d.fail("lookup table misses hotspot %d", i)
			return
		}
	}
	t.lookup.Store(&lk)
}

func (b *Engine) writeSnapLookup(w *snapWriter) {
	lk := *b.spots.lookup.Load()
	w.u32(uint32(len(lk)))
	for i := range lk {
		w.u32(lk[i].Load())
	}
}

func (e *Engine) readSnapSpatial(d *snapReader) {
	t := &e.spots
	n := t.len()
	hunts := d.count(8)
	var total uint64
	for range hunts {
		ord := d.u32()
		m := d.count(12)
		if d.err != nil {
			return
		}
		if ord >= uint32(len(*e.hunts.byOrd.Load())) {
			d.fail("spatial index of hunt %d, which does not exist", ord)
			return
		}
		r := sorted{lo: make([]uint32, 0, m), idx: make([]uint32, m)}
		b := d.bytes(int64(m) * 8)
		if d.err != nil {
			return
		}
		var last uint64
		for k := range m {
			g := binary.LittleEndian.Uint64(b[k*8:])
			if k > 0 && g < last {
				d.fail("spatial index of hunt %d is not sorted", ord)
				return
			}
			r.pushGh(g)
			last = g
		}
		b = d.bytes(int64(m) * 4)
		for k := range m {
			r.idx[k] = binary.LittleEndian.Uint32(b[k*4:])
		}
		if d.err != nil {
			return
		}
		for k := range m {
			if r.idx[k] >= n || t.huntOf(r.idx[k]) != ord {
				d.fail("spatial index of hunt %d names another hunt's hotspot", ord)
				return
			}
		}
		total += uint64(m)
		if !e.snap.building {
			e.hunts.ord(ord).spatial.view.Store(&spatialView{runs: []sorted{r}})
		}
	}
	if d.err == nil && total != uint64(n) {
		d.fail("spatial index holds %d hotspots of %d", total, n)
	}
}

func (p *partition) readSnap(d *snapReader, seq, imports uint64) {
	if got := d.u64(); d.err == nil && got != seq {
		d.fail("partition %d: seq %d, the header says %d", p.id, got, seq)
	}
	lastAt := d.i64()
	if got := d.u64(); d.err == nil && got != imports {
		d.fail("partition %d: import %d, the header says %d", p.id, got, imports)
	}
	np := d.count(4)
	arena := slices.Clone(d.bytes(int64(d.u32())))
	b := d.bytes(int64(np) * 4)
	if d.err != nil {
		return
	}
	ends := make([]uint32, np)
	prev := uint32(0)
	for i := range np {
		ends[i] = binary.LittleEndian.Uint32(b[i*4:])
		if ends[i] <= prev || ends[i] > uint32(len(arena)) {
			d.fail("partition %d: player table out of order", p.id)
			return
		}
		prev = ends[i]
	}
	if np > 0 && int(ends[np-1]) != len(arena) {
		d.fail("partition %d: player table does not cover its arena", p.id)
		return
	}
	p.players = players{arena: arena, end: ends}
	size := 64
	for size < np*2+2 {
		size *= 2
	}
	p.players.table = make([]uint32, size)
	for i := range uint32(np) {
		p.players.put(i)
	}
	ng := int(d.u64())
	if int64(ng)*8 > d.left {
		d.fail("partition %d: %d grants run past the end of the file", p.id, ng)
		return
	}
	size = 64
	for size < ng*2+2 {
		size *= 2
	}
	keep := p.grants.keepMeta
	p.grants = grants{table: make([]uint64, size), keepMeta: keep}
	if keep {
		p.grants.meta = make([]grantMeta, size)
	}
	slots := make([]int32, 0, min(ng, 1<<20)) // the slot of each grant, for its meta (builders)
	n := p.e.spots.len()
	for left := ng; left > 0 && d.err == nil; {
		k := min(left, 8192)
		b := d.bytes(int64(k) * 8)
		if d.err != nil {
			return
		}
		for j := range k {
			g := binary.LittleEndian.Uint64(b[j*8:])
			spot, pl := uint32(g>>32)-1, uint32(g)
			if g>>32 == 0 || spot >= n || int(pl) >= np || p.e.spots.partOf(spot) != p.id || p.grants.has(g) {
				d.fail("partition %d: grant %x out of range or repeated", p.id, g)
				return
			}
			slot := p.grants.put(g)
			if keep {
				slots = append(slots, int32(slot))
			}
			p.grants.n++
		}
		left -= k
	}
	if !keep {
		d.skip(int64(ng) * 16)
	} else {
		for i := 0; i < ng && d.err == nil; i++ {
			b := d.bytes(16)
			if b == nil {
				return
			}
			p.grants.meta[slots[i]] = grantMeta{gh: binary.LittleEndian.Uint64(b), reward: binary.LittleEndian.Uint32(b[8:]),
				points: binary.LittleEndian.Uint32(b[12:])}
		}
	}
	p.seq = hunt.Seq(seq)
	p.imports = imports
	p.lastSeq.Store(seq)
	p.lastAt.Store(lastAt)
}

func (e *Engine) readSnapWallets(d *snapReader) {
	n := d.count(2 + 8 + 8 + 4 + 8)
	for range n {
		player := hunt.PlayerID(d.str())
		balance, at := d.i64(), d.i64()
		ep := hunt.Epoch{Partition: geo.Partition(d.u32()), Seq: hunt.Seq(d.u64())}
		if d.err != nil {
			return
		}
		w := e.wallets.getOrCreate(player)
		w.balance.Store(balance)
		w.at, w.epoch = fromUnixNs(at), ep
	}
}

func (e *Engine) readSnapPositions(d *snapReader) {
	n := d.count(2 + 2 + 8 + 8 + 8 + 4 + 8)
	for range n {
		k := posKey{player: hunt.PlayerID(d.str()), hunt: hunt.HuntID(d.str())}
		p := position{lat: d.f64(), lon: d.f64(), at: fromUnixNs(d.i64())}
		p.epoch = hunt.Epoch{Partition: geo.Partition(d.u32()), Seq: hunt.Seq(d.u64())}
		if d.err != nil {
			return
		}
		e.pos.update(k, p)
	}
}

// readSnap restores the filters of the snapshot's bucket and rolls them to
// the bucket of now. With another window the buckets mean other times: the
// filters are read past and Open reads the i/ records instead.
func (x *idemIndex) readSnap(d *snapReader, now time.Time) {
	windowMs, bucket := d.i64(), d.i64()
	same := windowMs == x.window.Milliseconds()
	for i := range x.shards {
		sh := &x.shards[i]
		for j := range sh.filters {
			c := bloomChain{n: uint(d.u64()), cap: uint(d.u64()), fp: d.f64()}
			nf := d.count(16)
			for range nf {
				f := &bloom.BloomFilter{}
				b := d.bytes(int64(d.u64())) // the filter's encoded length, then the filter
				if d.err != nil {
					return
				}
				if err := f.UnmarshalBinary(b); err != nil {
					d.fail("idempotency filter: %v", err)
					return
				}
				c.filters = append(c.filters, f)
			}
			if d.err != nil {
				return
			}
			if nf == 0 {
				d.fail("empty idempotency filter chain")
				return
			}
			sh.filters[j] = c
		}
		sh.bucket = bucket
	}
	if d.err != nil || !same {
		x.restored = false
		return
	}
	for i := range x.shards {
		x.roll(&x.shards[i], now)
	}
	x.restored = true
}

// ---- writing ----

// snapWriter encodes a snapshot; the first error sticks.
type snapWriter struct {
	w   *bufio.Writer
	buf []byte
	n   int64
	err error
}

func (w *snapWriter) put(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.n += int64(n)
	w.err = err
}

func (w *snapWriter) u8(v uint8) { w.put([]byte{v}) }

func (w *snapWriter) u16(v uint16) {
	w.buf = binary.LittleEndian.AppendUint16(w.buf[:0], v)
	w.put(w.buf)
}

func (w *snapWriter) u32(v uint32) {
	w.buf = binary.LittleEndian.AppendUint32(w.buf[:0], v)
	w.put(w.buf)
}

func (w *snapWriter) u64(v uint64) {
	w.buf = binary.LittleEndian.AppendUint64(w.buf[:0], v)
	w.put(w.buf)
}

func (w *snapWriter) i64(v int64)   { w.u64(uint64(v)) }
func (w *snapWriter) f64(v float64) { w.u64(math.Float64bits(v)) }

func (w *snapWriter) str(s string) {
	w.u16(uint16(len(s)))
	w.put([]byte(s))
}

// writeSnapshot writes b's state (a builder's, complete) as snapshot no in
// dir and returns the file. hook is called half-way (a crash test point).
func (b *Engine) writeSnapshot(dir string, no uint64, hook func() error) (*snapFile, error) {
	final := filepath.Join(dir, fmt.Sprintf("snap-%016x.cairn", no))
	tmp := final + ".tmp"
	// A .tmp of this name is a crash's leftover: the store's lock (Pebble's)
	// keeps any other process out of this directory.
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	hdr, err := b.snapHeader()
	if err != nil {
		return nil, err
	}
	h := xxhash.New()
	w := &snapWriter{w: bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)}
	js, _ := json.Marshal(hdr)
	w.put([]byte(snapMagic))
	w.u32(snapVersion)
	w.u32(uint32(len(js)))
	w.put(js)
	b.writeSnapHunts(w)
	b.writeSnapWindows(w)
	b.writeSnapHotspots(w)
	b.writeSnapLookup(w)
	if w.err == nil {
		w.err = hook()
	}
	b.writeSnapSpatial(w)
	for _, p := range b.parts {
		p.writeSnap(w)
	}
	b.writeSnapWallets(w)
	b.writeSnapPositions(w)
	b.idem.writeSnap(w)
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err != nil {
		return nil, w.err
	}
	var end []byte
	end = binary.LittleEndian.AppendUint64(end, h.Sum64())
	end = append(end, snapEnd...)
	if _, err := f.Write(end); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &snapFile{path: final, no: no, size: w.n + int64(len(end)), hdr: hdr}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (b *Engine) snapHeader() (snapHeader, error) {
	h := snapHeader{Version: snapVersion, Partitions: len(b.parts), PrefixLen: b.prefixLen,
		CreatedMs: b.cfg.Clock().UnixMilli(), Hotspots: b.spots.len(), Digest: b.foldDigest()}
	for _, p := range b.parts {
		var last uint64
		if p.seq > 0 {
			v, closer, err := b.rd.Get(eventKey(nil, p.id, p.seq))
			if err != nil {
				return h, fmt.Errorf("read the last event of partition %d: %w", p.id, err)
			}
			last = xxhash.Sum64(v)
			closer.Close()
		}
		h.Last = append(h.Last, last)
		h.Seqs = append(h.Seqs, uint64(p.seq))
		h.Imports = append(h.Imports, p.imports)
		h.Grants += uint64(p.grants.n)
	}
	b.wallets.each(func(hunt.PlayerID, *wallet) { h.Wallets++ })
	return h, nil
}

func (b *Engine) writeSnapHunts(w *snapWriter) {
	ords := *b.hunts.byOrd.Load()
	w.u32(uint32(len(ords)))
	for _, he := range ords {
		w.str(string(he.id))
	}
}

func (b *Engine) writeSnapWindows(w *snapWriter) {
	ws := *b.spots.windows.Load()
	w.u32(uint32(len(ws)))
	for _, x := range ws {
		w.i64(x.opens)
		w.i64(x.closes)
	}
}

func (b *Engine) writeSnapHotspots(w *snapWriter) {
	t := &b.spots
	n := t.len()
	for base := uint32(0); base < n; base += chunkLen {
		m := min(n-base, chunkLen)
		c := t.chunk(base)
		for k := range m {
			w.u32(t.huntOf(base + k))
		}
		for k := range m {
			w.u16(c.part[k])
		}
		for k := range m {
			w.u8(c.idLen[k])
		}
		for k := range m {
			w.put(t.id(base + k))
		}
		defs := make([]spotDef, m)
		for k := range m {
			defs[k] = t.def(base + k)
		}
		for _, f := range []func(d spotDef) uint32{
			func(d spotDef) uint32 { return uint32(d.lat) },
			func(d spotDef) uint32 { return uint32(d.lon) },
			func(d spotDef) uint32 { return d.tickets },
			func(d spotDef) uint32 { return d.reward },
			func(d spotDef) uint32 { return d.points },
			func(d spotDef) uint32 { return d.window },
		} {
			for k := range m {
				w.u32(f(defs[k]))
			}
		}
		for k := range m {
			w.u32(t.granted(base + k))
		}
	}
}

// writeSnapSpatial writes each hunt's hotspots as one sorted run (the
// builder keeps no spatial index: it sorts them here).
func (b *Engine) writeSnapSpatial(w *snapWriter) {
	t := &b.spots
	n := t.len()
	byHunt := map[uint32]*run{}
	for i := range n {
		o := t.huntOf(i)
		r := byHunt[o]
		if r == nil {
			r = &run{}
			byHunt[o] = r
		}
		r.gh = append(r.gh, geohashOf(t.def(i)))
		r.idx = append(r.idx, i)
	}
	ords := make([]uint32, 0, len(byHunt))
	for o := range byHunt {
		ords = append(ords, o)
	}
	slices.Sort(ords)
	w.u32(uint32(len(ords)))
	for _, o := range ords {
		r := sortRun(*byHunt[o])
		w.u32(o)
		w.u32(uint32(r.len()))
		for c := (cursor{r: &r}); c.more(); c.i++ {
			w.u64(c.gh())
		}
		for _, x := range r.idx {
			w.u32(x)
		}
	}
}

func (p *partition) writeSnap(w *snapWriter) {
	w.u64(uint64(p.seq))
	w.i64(p.lastAt.Load())
	w.u64(p.imports)
	w.u32(uint32(len(p.players.end)))
	w.u32(uint32(len(p.players.arena)))
	w.put(p.players.arena)
	for _, x := range p.players.end {
		w.u32(x)
	}
	w.u64(uint64(p.grants.n))
	for _, g := range p.grants.table {
		if g != 0 {
			w.u64(g)
		}
	}
	// Then each grant's meta, in the same order (a builder keeps them).
	for j, g := range p.grants.table {
		if g != 0 {
			w.u64(p.grants.meta[j].gh)
			w.u32(p.grants.meta[j].reward)
			w.u32(p.grants.meta[j].points)
		}
	}
}

func (b *Engine) writeSnapWallets(w *snapWriter) {
	var n uint32
	b.wallets.each(func(hunt.PlayerID, *wallet) { n++ })
	w.u32(n)
	b.wallets.each(func(id hunt.PlayerID, x *wallet) {
		w.str(string(id))
		w.i64(x.balance.Load())
		w.i64(unixNs(x.at))
		w.u32(uint32(x.epoch.Partition))
		w.u64(uint64(x.epoch.Seq))
	})
}

func (b *Engine) writeSnapPositions(w *snapWriter) {
	var n uint32
	for i := range b.pos.shards {
		n += uint32(len(b.pos.shards[i].m))
	}
	w.u32(n)
	for i := range b.pos.shards {
		for k, p := range b.pos.shards[i].m {
			w.str(string(k.player))
			w.str(string(k.hunt))
			w.f64(p.lat)
			w.f64(p.lon)
			w.i64(unixNs(p.at))
			w.u32(uint32(p.epoch.Partition))
			w.u64(uint64(p.epoch.Seq))
		}
	}
}

func (x *idemIndex) writeSnap(w *snapWriter) {
	w.i64(x.window.Milliseconds())
	w.i64(x.shards[0].bucket)
	for i := range x.shards {
		sh := &x.shards[i]
		if sh.bucket != x.shards[0].bucket {
			x.roll(sh, time.UnixMilli(x.shards[0].bucket*x.window.Milliseconds()))
		}
		for _, c := range sh.filters {
			w.u64(uint64(c.n))
			w.u64(uint64(c.cap))
			w.f64(c.fp)
			w.u32(uint32(len(c.filters)))
			for _, f := range c.filters {
				bs, err := f.MarshalBinary()
				if err != nil && w.err == nil {
					w.err = err
				}
				w.u64(uint64(len(bs)))
				w.put(bs)
			}
		}
	}
}

// ---- the digest of the fold ----

// foldDigest is a digest of what the fold decides: each partition's seq,
// each hotspot's granted count, every grant, wallet and last position.
// Definitions are not in it (they are not a fold of the log). It is a sum
// of one hash per item, so the order of maps does not matter: a state
// loaded from a snapshot and the same state folded from the log agree.
func (e *Engine) foldDigest() uint64 {
	var sum uint64
	var buf []byte
	add := func() { sum += mix(xxhash.Sum64(buf)) }
	t := &e.spots
	ords := *e.hunts.byOrd.Load()
	for _, p := range e.parts {
		buf = append(buf[:0], 'p')
		buf = binary.LittleEndian.AppendUint32(buf, uint32(p.id))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.seq))
		add()
		p.grants.each(func(spot, player uint32) {
			buf = append(buf[:0], 'g')
			buf = append(buf, ords[t.huntOf(spot)].id...)
			buf = append(buf, 0)
			buf = append(buf, t.id(spot)...)
			buf = append(buf, 0)
			buf = append(buf, p.players.idOf(player)...)
			add()
		})
	}
	for i := range t.len() {
		if g := t.granted(i); g > 0 {
			buf = append(buf[:0], 's')
			buf = append(buf, ords[t.huntOf(i)].id...)
			buf = append(buf, 0)
			buf = append(buf, t.id(i)...)
			buf = binary.LittleEndian.AppendUint32(buf, g)
			add()
		}
	}
	e.wallets.each(func(id hunt.PlayerID, w *wallet) {
		buf = append(buf[:0], 'w')
		buf = append(buf, id...)
		buf = append(buf, 0)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(w.balance.Load()))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(unixNs(w.at)))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(w.epoch.Partition))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(w.epoch.Seq))
		add()
	})
	for i := range e.pos.shards {
		sh := &e.pos.shards[i]
		sh.mu.Lock()
		for k, p := range sh.m {
			buf = append(buf[:0], 'x')
			buf = append(buf, k.player...)
			buf = append(buf, 0)
			buf = append(buf, k.hunt...)
			buf = append(buf, 0)
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.lat))
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.lon))
			buf = binary.LittleEndian.AppendUint64(buf, uint64(unixNs(p.at)))
			buf = binary.LittleEndian.AppendUint32(buf, uint32(p.epoch.Partition))
			buf = binary.LittleEndian.AppendUint64(buf, uint64(p.epoch.Seq))
			add()
		}
		sh.mu.Unlock()
	}
	return sum
}

// ---- opening and taking snapshots ----

// openState loads the engine's state: from the newest usable snapshot and
// the log after it, or from the whole log. A snapshot that cannot be used
// is logged and the previous one tried.
func openState(cfg Config, db *pebble.DB, m meta) (*Engine, error) {
	snaps, err := listSnapshots(snapDir(cfg.Dir))
	if err != nil {
		cfg.Logger.Warn("cannot list snapshots: loading the whole log", "err", err)
	}
	var skipped []error
	for i := range snaps {
		s := &snaps[i]
		err := s.check()
		if err == nil {
			e := newEngine(cfg, db, db, m)
			if err = e.loadFrom(s); err == nil {
				e.snap.mark.Store(e.logMark())
				return e, nil
			}
		}
		cfg.Logger.Warn("snapshot unusable: trying the previous one, then the whole log", "file", s.path, "err", err)
		skipped = append(skipped, err)
	}
	e := newEngine(cfg, db, db, m)
	if err := e.loadFrom(nil); err != nil {
		return nil, errors.Join(append([]error{err}, skipped...)...)
	}
	return e, nil
}

// logMark is the log's position: Σ seqs and Σ import batches. A snapshot
// is worth taking only when it moved.
func (e *Engine) logMark() uint64 {
	var n uint64
	for _, p := range e.parts {
		n += p.lastSeq.Load() + p.pubImports.Load()
	}
	return n
}

// waitDurable waits until every group written to Pebble so far is synced:
// a Pebble snapshot taken before the call then holds only durable groups.
func (e *Engine) waitDurable(ctx context.Context) error {
	c := e.committer.Load()
	if c == nil {
		return nil // not running: only synced writes reach the store
	}
	a := c.applied.Load()
	for c.durable.Load() < a {
		if err := e.failure(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Snapshot writes a snapshot of the durable state now (see the top of this
// file) and removes all but the newest snapKeep. Writers are not paused.
// One runs at a time; a second caller waits for the first.
func (e *Engine) Snapshot(ctx context.Context) (SnapshotInfo, error) {
	e.snap.mu.Lock()
	defer e.snap.mu.Unlock()
	if e.closed.Load() {
		return SnapshotInfo{}, engine.ErrClosed
	}
	start := time.Now()
	mark := e.logMark()
	ps := e.db.NewSnapshot()
	defer ps.Close()
	if err := e.waitDurable(ctx); err != nil {
		return SnapshotInfo{}, err
	}
	dir := snapDir(e.cfg.Dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return SnapshotInfo{}, err
	}
	snaps, err := listSnapshots(dir)
	if err != nil {
		return SnapshotInfo{}, err
	}
	bcfg := e.cfg
	bcfg.Metrics = telemetry.Discard()
	bcfg.InboxLenMax = 1
	newBuilder := func() *Engine { return newBuilderEngine(bcfg, e.db, ps, e.meta) }
	var b *Engine
	unusable := map[string]bool{} // removed once the new snapshot is written
	for i := range snaps {        // start from the newest usable snapshot
		s := &snaps[i]
		err := s.check()
		if err == nil {
			b = newBuilder()
			if err = b.loadFrom(s); err == nil {
				break
			}
			b = nil
		}
		unusable[s.path] = errors.Is(err, errSnapshotUnusable)
		e.log.Warn("snapshot unusable as a base for the next: trying the previous one, then the whole log", "file", s.path, "err", err)
		if ctx.Err() != nil {
			return SnapshotInfo{}, ctx.Err()
		}
	}
	if b == nil {
		b = newBuilder()
		if err := b.loadFrom(nil); err != nil {
			return SnapshotInfo{}, fmt.Errorf("snapshot: fold the log: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return SnapshotInfo{}, err
	}
	var no uint64 = 1
	if len(snaps) > 0 {
		no = snaps[0].no + 1
	}
	f, err := b.writeSnapshot(dir, no, func() error { return e.hook(FaultSnapshotWrite) })
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: write: %w", err)
	}
	e.snap.mark.Store(mark)
	e.pruneSnapshots(dir, unusable)
	base := e.baseName()
	if err := e.retain(dir); err != nil {
		// The snapshot stands; the log stays longer than asked.
		e.log.Error("truncating the log failed; it is retried after the next snapshot", "err", err)
	}
	if e.baseName() != base {
		e.pruneSnapshots(dir, nil) // the former base
	}
	info := f.info()
	took := time.Since(start)
	info.TookMs = took.Milliseconds()
	e.log.Info("snapshot written", "file", f.path, "events", info.Events, "hotspots", info.Hotspots,
		"bytes", info.Bytes, "took", took)
	return info, nil
}

// pruneSnapshots keeps the newest snapshot (just written), the log's base
// (retention.go), and, up to snapKeep in all, the newest older ones whose
// checksum holds and that did not turn out unusable (do not fit this log)
// as the builder's base; it removes the rest and any .tmp file a crash left.
func (e *Engine) pruneSnapshots(dir string, unusable map[string]bool) {
	snaps, _ := listSnapshots(dir)
	kept := 0
	base := e.baseName()
	older := false // past the base: its log is gone, so it can never be loaded
	for i := range snaps {
		s := &snaps[i]
		if s.name() == base {
			kept++ // the log starts at it: kept while it is the base
			older = true
			continue
		}
		if kept < snapKeep && !older {
			err := error(nil)
			if i > 0 {
				err = s.check()
			}
			if err == nil && unusable[s.path] {
				err = errors.New("does not fit the log (see the warning above)")
			}
			if err == nil {
				kept++
				continue
			}
			e.log.Warn("removing an unusable snapshot", "file", s.path, "err", err)
		}
		if err := os.Remove(s.path); err != nil {
			e.log.Warn("cannot remove an old snapshot", "file", s.path, "err", err)
		}
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "snap-*.cairn.tmp"))
	for _, t := range tmps {
		os.Remove(t)
	}
}

// newBuilderEngine is an engine that loads from rd to write a snapshot (or
// to read one whole): no spatial index, grants with their meta.
func newBuilderEngine(cfg Config, db *pebble.DB, rd reader, m meta) *Engine {
	b := newEngine(cfg, db, rd, m)
	b.snap.building = true
	for _, p := range b.parts {
		p.grants.keepMeta = true
	}
	return b
}

// snapshotDue runs a snapshot in the background when the log moved since
// the last one and none is running (Run's ticker).
func (e *Engine) snapshotDue(ctx context.Context) {
	if e.logMark() == e.snap.mark.Load() || !e.snap.mu.TryLock() {
		return
	}
	e.snap.mu.Unlock()
	e.snap.wg.Go(func() {
		if _, err := e.Snapshot(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("snapshot failed; the next is tried at the next interval", "err", err)
		}
	})
}

// SnapshotCheck is what CheckSnapshots found about one snapshot file.
type SnapshotCheck struct {
	Name    string `json:"name"`
	Events  uint64 `json:"events"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// Loaded names the snapshot Open started from ("" = the whole log).
func (e *Engine) Loaded() string { return e.snap.loaded }

// CheckSnapshots checks every snapshot file of the store against the log
// (offline, on an engine that is not running): its checksum; that it loads;
// that the digest of what it loads is the one it was written with; and that
// it equals the fold of the log up to the seqs it covers (the digests of
// both agree), folded from the log's base where the log was truncated (the
// base itself is then held to nothing but its own digest: the log before
// it is gone). A snapshot that fails is reported, not fatal: Open would skip
// it. The error is for a check that could not run.
func (e *Engine) CheckSnapshots() ([]SnapshotCheck, error) {
	if e.running.Load() {
		return nil, errors.New("embedded: CheckSnapshots while Run is running")
	}
	snaps, err := listSnapshots(snapDir(e.cfg.Dir))
	if err != nil {
		return nil, err
	}
	cfg := e.cfg
	cfg.Metrics = telemetry.Discard()
	cfg.InboxLenMax = 1
	cfg.Logger = e.log
	var out []SnapshotCheck
	for i := range snaps {
		s := &snaps[i]
		c := SnapshotCheck{Name: s.name()}
		fail := func(format string, args ...any) {
			if c.Problem == "" {
				c.Problem = fmt.Sprintf(format, args...)
			}
		}
		if err := s.check(); err != nil {
			fail("%v", err)
			out = append(out, c)
			continue
		}
		c.Events = s.info().Events
		hunts, err := e.readHunts()
		if err != nil {
			return nil, err
		}
		b := newBuilderEngine(cfg, e.db, e.db, e.meta)
		if err := b.loadSnapshot(s, hunts); err != nil {
			fail("does not load: %v", err)
		} else if d := b.foldDigest(); d != s.hdr.Digest {
			fail("its state's digest %x is not the %x it was written with", d, s.hdr.Digest)
		}
		base := e.base.Load()
		// The base, or older: the log before it is gone.
		before := base != nil && s.no <= snapNo(base.Snapshot)
		if c.Problem == "" && !before {
			// The reference: the log up to its seqs, folded from the start,
			// or from the base where the log was truncated.
			f := newBuilderEngine(cfg, e.db, e.db, e.meta)
			f.snap.upTo = make([]hunt.Seq, len(s.hdr.Seqs))
			for p, q := range s.hdr.Seqs {
				f.snap.upTo[p] = hunt.Seq(q)
			}
			var from *snapFile
			if base != nil {
				from = &snapFile{path: filepath.Join(snapDir(e.cfg.Dir), base.Snapshot)}
				if err := from.check(); err != nil {
					fail("the log's base %s, which it is compared from, is unusable: %v", base.Snapshot, err)
				}
			}
			if c.Problem == "" {
				if err := f.loadFrom(from); err != nil {
					fail("the log up to it does not fold: %v", err)
				}
			}
			if c.Problem == "" {
				for _, p := range f.parts {
					if uint64(p.seq) != s.hdr.Seqs[p.id] {
						fail("covers seq %d of partition %d; the log ends at %d", s.hdr.Seqs[p.id], p.id, p.seq)
					}
				}
				if d := f.foldDigest(); c.Problem == "" && d != s.hdr.Digest {
					fail("differs from the fold of the log up to the seqs it covers (digest %x, the log's %x)", s.hdr.Digest, d)
				}
			}
		}
		c.OK = c.Problem == ""
		out = append(out, c)
	}
	return out, nil
}
