package embedded

// Pebble key layout, format version 1.
//
// Every key starts with a one-letter family and '/'. Numbers are big-endian so
// that keys sort numerically. Ids are restricted to [A-Za-z0-9._:-]
// (hunt.ValidID), so a 0x00 byte never occurs inside one and separates ids
// unambiguously.
//
//	m/meta                                  JSON {"version":1,"partitions":N,"prefix_len":L};
//	                                        written once (synced) when the store is created
//	h/<hunt>                                the hunt as JSON (hunt.Hunt); written synced by PutHunt
//	s/<hunt> 0x00 <hotspot>                 the hotspot definition, binary (appendDef below):
//	                                        version 1, uvarint partition, float64 LE lat, lon,
//	                                        varint tickets, reward, points, a flags byte
//	                                        (bit 0 opens_at set, bit 1 closes_at set), for each
//	                                        set time varint unix seconds + uvarint nanoseconds,
//	                                        then uvarint length + geohash
//	e/<partition u32 BE><seq u64 BE>        one event, hunt.AppendEvent (docs/FORMATS.md)
//	l/<player> 0x00 <unix ms u64 BE><partition u32 BE><seq u64 BE>
//	                                        ledger index: the value is the event's e/ key; one per
//	                                        event with a wallet effect (Event.Credit() != 0)
//	i/<bucket u64 BE><player> 0x00 <key>    idempotency record: the value is the decided event's
//	                                        <partition u32 BE><seq u64 BE>; bucket = decision unix ms /
//	                                        window ms (idem.go)
//	j/<partition u32 BE><import u64 BE><n u32 BE>
//	                                        import journal: the value is the s/ key of the n-th
//	                                        hotspot of the partition's import batch number
//	                                        <import>; written with the s/ key, so that a start
//	                                        from a snapshot reloads only the definitions written
//	                                        after it (snapshot.go)
//	r/<player>                              token revocation: unix ms u64 BE; the player's tokens
//	                                        issued before it are refused; written synced by
//	                                        RevokeTokens, outside the log (revoke.go)
//
// s/, j/, e/, l/ and i/ keys are written only through the committer, inside the
// one synced write that records the decisions they belong to, so a batch is
// either wholly on disk or not at all. Granted counts, claimer sets, wallets
// and last positions are not stored: they are a fold of the e/ keys (I7)
// rebuilt by Open. Idempotency records are kept on disk for their window.
//
// A hotspot keeps the partition it was first imported into, stored in its
// definition, even if a later import moves it: one writer owns its tickets
// for life, before and after a restart.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

const (
	formatVersion = 1
	defVersion    = 1
	metaKey       = "m/meta"
	eventKeyLen   = 2 + 4 + 8
)

// Errors of Open.
var (
	// ErrLayout: the store was created with another partition count or prefix length.
	ErrLayout = errors.New("store layout differs from config")
	// ErrCorrupt: a stored record does not decode or breaks an invariant; the message names the key.
	ErrCorrupt = errors.New("corrupt store")
)

type meta struct {
	Version    int `json:"version"`
	Partitions int `json:"partitions"`
	PrefixLen  int `json:"prefix_len"`
}

// settleMeta reads m/meta, or writes it for a new store, and returns the layout to use.
func settleMeta(db *pebble.DB, cfg Config) (meta, error) {
	v, closer, err := db.Get([]byte(metaKey))
	if errors.Is(err, pebble.ErrNotFound) {
		m := meta{Version: formatVersion, Partitions: cfg.Partitions, PrefixLen: cfg.PrefixLen}
		if m.Partitions == 0 {
			m.Partitions = geo.PartitionsDefault
		}
		if m.PrefixLen == 0 {
			m.PrefixLen = geo.PrefixLenDefault
		}
		b, _ := json.Marshal(m)
		if err := db.Set([]byte(metaKey), b, pebble.Sync); err != nil {
			return meta{}, fmt.Errorf("write %s: %w", metaKey, err)
		}
		return m, nil
	}
	if err != nil {
		return meta{}, fmt.Errorf("read %s: %w", metaKey, err)
	}
	var m meta
	err = json.Unmarshal(v, &m)
	closer.Close()
	if err != nil || m.Version != formatVersion || m.Partitions < 1 || m.Partitions > geo.PartitionsMax ||
		m.PrefixLen < 1 || m.PrefixLen > geo.PrefixLenMax {
		return meta{}, fmt.Errorf("%w: key %q: unreadable or unknown version (%v)", ErrCorrupt, metaKey, err)
	}
	if cfg.Partitions != 0 && cfg.Partitions != m.Partitions {
		return meta{}, fmt.Errorf("%w: store has %d partitions, config asks %d", ErrLayout, m.Partitions, cfg.Partitions)
	}
	if cfg.PrefixLen != 0 && cfg.PrefixLen != m.PrefixLen {
		return meta{}, fmt.Errorf("%w: store has prefix length %d, config asks %d", ErrLayout, m.PrefixLen, cfg.PrefixLen)
	}
	return m, nil
}

func huntKey(id hunt.HuntID) []byte { return append([]byte("h/"), id...) }

func defKey(dst []byte, h hunt.HuntID, s hunt.HotspotID) []byte {
	dst = append(dst, 's', '/')
	dst = append(dst, h...)
	dst = append(dst, 0)
	return append(dst, s...)
}

func eventKey(dst []byte, p geo.Partition, seq hunt.Seq) []byte {
	dst = append(dst, 'e', '/')
	dst = binary.BigEndian.AppendUint32(dst, uint32(p))
	return binary.BigEndian.AppendUint64(dst, uint64(seq))
}

func ledgerPrefix(dst []byte, player hunt.PlayerID) []byte {
	dst = append(dst, 'l', '/')
	dst = append(dst, player...)
	return append(dst, 0)
}

func ledgerKey(dst []byte, ev *hunt.Event) []byte {
	dst = ledgerPrefix(dst, ev.Player)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ev.At.UnixMilli()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(ev.Epoch.Partition))
	return binary.BigEndian.AppendUint64(dst, uint64(ev.Epoch.Seq))
}

// upperBound returns the smallest key greater than every key with this prefix
// (the prefix's last byte incremented; our prefixes never end in 0xff).
func upperBound(prefix []byte) []byte {
	u := bytes.Clone(prefix)
	u[len(u)-1]++
	return u
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// appendDef encodes a hotspot definition (see the layout above).
func appendDef(dst []byte, p geo.Partition, s *hunt.Hotspot) []byte {
	dst = append(dst, defVersion)
	dst = binary.AppendUvarint(dst, uint64(p))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.Lat))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.Lon))
	dst = binary.AppendVarint(dst, s.Tickets)
	dst = binary.AppendVarint(dst, s.Reward)
	dst = binary.AppendVarint(dst, s.Points)
	var flags byte
	if !s.OpensAt.IsZero() {
		flags |= 1
	}
	if !s.ClosesAt.IsZero() {
		flags |= 2
	}
	dst = append(dst, flags)
	if flags&1 != 0 {
		dst = appendTime(dst, s.OpensAt)
	}
	if flags&2 != 0 {
		dst = appendTime(dst, s.ClosesAt)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Geohash)))
	return append(dst, s.Geohash...)
}

var errBadDef = errors.New("malformed hotspot definition")

// decodeDef is the inverse of appendDef; s.Hunt and s.ID come from the key.
func decodeDef(b []byte, s *hunt.Hotspot) (geo.Partition, error) {
	bad := errBadDef
	if len(b) < 1 || b[0] != defVersion {
		return 0, bad
	}
	b = b[1:]
	ok := true
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	f64 := func() float64 {
		if len(b) < 8 {
			ok = false
			return 0
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		return v
	}
	tm := func() time.Time {
		sec := sv()
		ns := uv()
		if ns >= 1e9 {
			ok = false
		}
		return time.Unix(sec, int64(ns)).UTC()
	}
	p := uv()
	s.Lat, s.Lon = f64(), f64()
	s.Tickets, s.Reward, s.Points = sv(), sv(), sv()
	if len(b) < 1 {
		return 0, bad
	}
	flags := b[0]
	b = b[1:]
	s.OpensAt, s.ClosesAt = time.Time{}, time.Time{}
	if flags&1 != 0 {
		s.OpensAt = tm()
	}
	if flags&2 != 0 {
		s.ClosesAt = tm()
	}
	n := uv()
	if !ok || n > uint64(len(b)) || flags&^3 != 0 || p > math.MaxUint32 {
		return 0, bad
	}
	s.Geohash = string(b[:n])
	if uint64(len(b)) != n {
		return 0, bad
	}
	return geo.Partition(p), nil
}

// ledgerEntry turns an event with a wallet effect into its ledger line.
func ledgerEntry(ev *hunt.Event) hunt.LedgerEntry {
	le := hunt.LedgerEntry{Epoch: ev.Epoch, At: ev.At, Amount: ev.Credit()}
	if ev.Kind == hunt.KindClaimCompleted {
		le.Kind, le.Hunt, le.Hotspot = "claim", ev.Hunt, ev.Hotspot
	} else {
		le.Kind, le.Reason = "spend", ev.Reason
	}
	return le
}

// reader is what Open and the snapshot builder load from: the store
// itself, or a Pebble snapshot of it.
type reader interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
	Get(key []byte) ([]byte, io.Closer, error)
}

// loadFrom rebuilds the in-memory state: from snapshot s and the log after
// it, or (s nil) from every definition and the whole log. It runs before
// any goroutine touches e, so it writes writer-owned fields directly.
func (e *Engine) loadFrom(s *snapFile) error {
	hunts, err := e.readHunts()
	if err != nil {
		return err
	}
	if err := e.readLogStart(); err != nil {
		return err
	}
	now := e.now()
	if s != nil {
		if err := e.loadSnapshot(s, hunts); err != nil {
			return err
		}
		if err := e.loadDefTail(); err != nil {
			return err
		}
	} else {
		for _, h := range hunts {
			e.hunts.add(h)
		}
		if err := e.loadDefs(); err != nil {
			return err
		}
		if b := e.base.Load(); b != nil {
			return fmt.Errorf("%w: the log was truncated at snapshot %s and no usable snapshot covers its start", ErrCorrupt, b.Snapshot)
		}
	}
	if err := e.loadImportCounts(); err != nil {
		return err
	}
	// Idempotency filters: restored from the snapshot and completed by the
	// tail's events as they are replayed, or read from the i/ records.
	tailIdem := s != nil && e.idem.restored
	if !tailIdem {
		e.idem.resetFilters(now)
	}
	for _, p := range e.parts {
		if err := e.replay(p, tailIdem); err != nil {
			return err
		}
	}
	if !tailIdem {
		if err := e.idem.loadIdem(e.rd, now); err != nil {
			return err
		}
	}
	// A store that breaks I4 is corrupt, and serving from it would spread
	// the damage. (I1 and I2 are checked per event by apply; a balance is a
	// sum over every partition, so it is checked once all are folded.)
	var bad error
	e.wallets.each(func(id hunt.PlayerID, w *wallet) {
		if b := w.balance.Load(); bad == nil && b < 0 {
			bad = fmt.Errorf("%w: I4: wallet of %s has balance %d", ErrCorrupt, id, b)
		}
	})
	return bad
}

// readHunts reads every hunt, ordered by id.
func (e *Engine) readHunts() ([]*hunt.Hunt, error) {
	it, err := e.rd.NewIter(&pebble.IterOptions{LowerBound: []byte("h/"), UpperBound: []byte("h0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*hunt.Hunt
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", it.Key(), err)
		}
		h := new(hunt.Hunt)
		if err := json.Unmarshal(v, h); err != nil || string(h.ID) != string(it.Key()[2:]) {
			return nil, fmt.Errorf("%w: key %q: hunt does not decode or names another id (%v)", ErrCorrupt, it.Key(), err)
		}
		out = append(out, h)
	}
	return out, it.Error()
}

// journalKey: j/<partition u32 BE><import u64 BE><n u32 BE>.
func journalKey(dst []byte, p geo.Partition, no uint64, n uint32) []byte {
	dst = append(dst, 'j', '/')
	dst = binary.BigEndian.AppendUint32(dst, uint32(p))
	dst = binary.BigEndian.AppendUint64(dst, no)
	return binary.BigEndian.AppendUint32(dst, n)
}

// loadImportCounts sets each partition's import counter to its last
// journalled import batch (or what the snapshot covered, if later), so that
// batch numbers keep growing across restarts.
func (e *Engine) loadImportCounts() error {
	for _, p := range e.parts {
		lo := journalKey(nil, p.id, 0, 0)[:6]
		it, err := e.rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: upperBound(lo)})
		if err != nil {
			return err
		}
		if it.Last() {
			if k := it.Key(); len(k) == 18 {
				p.imports = max(p.imports, binary.BigEndian.Uint64(k[6:14]))
			}
		}
		err = it.Close()
		if err != nil {
			return err
		}
		p.pubImports.Store(p.imports)
	}
	return nil
}

func (e *Engine) loadDefs() error {
	it, err := e.rd.NewIter(&pebble.IterOptions{LowerBound: []byte("s/"), UpperBound: []byte("s0")})
	if err != nil {
		return err
	}
	defer it.Close()
	// The spatial index of each hunt is built once, sorted, at the end.
	type spatialLoad struct {
		gh  []uint64
		idx []uint32
	}
	byHunt := map[uint32]*spatialLoad{}
	t := &e.spots
	var def hunt.Hotspot
	var he *huntEntry
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		hid, sid, found := bytes.Cut(k[2:], []byte{0})
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read %q: %w", k, err)
		}
		p, derr := decodeDef(v, &def)
		if derr == nil && (len(def.Geohash) != geo.GeohashLen || !geo.ValidGeohash(def.Geohash)) {
			derr = errors.New("bad geohash")
		}
		if derr == nil && (!hunt.ValidID(string(sid)) || !geo.ValidCoord(def.Lat, def.Lon) ||
			def.Tickets < 0 || def.Tickets > hunt.TicketsMax || def.Reward < 0 || def.Reward > hunt.RewardMax ||
			def.Points < 0 || def.Points > hunt.PointsMax) {
			derr = errors.New("field out of range")
		}
		if !found || derr != nil || int(p) >= len(e.parts) {
			return fmt.Errorf("%w: key %q: hotspot definition does not decode (%v, partition %d)", ErrCorrupt, k, derr, p)
		}
		if he == nil || string(he.id) != string(hid) { // keys come sorted: hunt by hunt
			he = e.hunts.get(hunt.HuntID(hid))
		}
		if he == nil {
			return fmt.Errorf("%w: key %q: hotspot of a hunt that does not exist", ErrCorrupt, k)
		}
		// Stores written before coordinates were kept at 1e-7 degree are
		// rounded here, as Normalize rounds new imports.
		def.Lat, def.Lon = geo.RoundE7(def.Lat), geo.RoundE7(def.Lon)
		d := t.compact(&def)
		i := t.load(he.ord, sid, p, d, 0) // store keys are unique; indexed below
		sl := byHunt[he.ord]
		if sl == nil {
			sl = &spatialLoad{}
			byHunt[he.ord] = sl
		}
		sl.gh = append(sl.gh, geohashOf(d))
		sl.idx = append(sl.idx, i)
	}
	if err := it.Error(); err != nil {
		return err
	}
	t.reindex()
	if e.snap.building {
		return nil // the builder sorts the spatial runs as it writes them
	}
	for ord, sl := range byHunt {
		e.hunts.ord(ord).spatial.bulk(sl.gh, sl.idx)
	}
	return nil
}

// loadDefTail loads the definitions written after the snapshot just
// loaded: those of each partition's import batches after the one it covers
// (the j/ journal), at their latest value.
func (e *Engine) loadDefTail() error {
	t := &e.spots
	adds := map[uint32][]spatialAdd{}
	var def hunt.Hotspot
	for _, p := range e.parts {
		lo := journalKey(nil, p.id, p.imports+1, 0)
		hi := journalKey(nil, p.id+1, 0, 0)[:6]
		it, err := e.rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			sk, err := it.ValueAndErr()
			if err == nil && (len(sk) < 3 || string(sk[:2]) != "s/") {
				err = errors.New("does not name a definition")
			}
			if err != nil {
				it.Close()
				return fmt.Errorf("%w: journal key %x: %v", ErrCorrupt, it.Key(), err)
			}
			hid, sid, _ := bytes.Cut(sk[2:], []byte{0})
			v, closer, err := e.rd.Get(sk)
			if err != nil {
				it.Close()
				return fmt.Errorf("%w: journal key %x names %q: %v", ErrCorrupt, it.Key(), sk, err)
			}
			part, derr := decodeDef(v, &def)
			closer.Close()
			he := e.hunts.get(hunt.HuntID(hid))
			if derr != nil || part != p.id || he == nil || !hunt.ValidID(string(sid)) || !geo.ValidCoord(def.Lat, def.Lon) {
				it.Close()
				return fmt.Errorf("%w: key %q: hotspot definition does not decode or does not fit (%v)", ErrCorrupt, sk, derr)
			}
			def.Lat, def.Lon = geo.RoundE7(def.Lat), geo.RoundE7(def.Lon)
			i, ok := t.find(he.ord, string(sid))
			if !ok {
				t.mu.Lock()
				i = t.add(terms{hunt: he.ord}, sid, part, true)
				t.mu.Unlock()
			}
			if a, moved := e.publishDef(i, t.compact(&def)); moved && !e.snap.building {
				adds[he.ord] = append(adds[he.ord], a)
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	for ord, list := range adds {
		e.hunts.ord(ord).spatial.add(t, list)
	}
	return nil
}

// replay folds the partition's log after its seq (0, or what a snapshot
// covered) into memory with the live writer's own apply and publish
// (fold.go). It applies recorded outcomes and never decides again (I7).
// With idem set, it also adds each event's idempotency key to the filters
// (a start from a snapshot, whose filters cover the keys before it).
func (e *Engine) replay(p *partition, idem bool) error {
	if start := e.logStartOf(p.id); p.seq+1 < start {
		return fmt.Errorf("%w: partition %d: state at seq %d, but the log starts at %d", errSnapshotUnusable, p.id, p.seq, start)
	}
	if p.seq > 0 && p.seq+1 > e.logStartOf(p.id) {
		// The log must still hold the last event the state covers: a
		// snapshot ahead of the log is not this log's. (Where the log was
		// truncated right after it, the event is gone: nothing to compare.)
		v, closer, err := e.rd.Get(eventKey(nil, p.id, p.seq))
		if err != nil {
			return fmt.Errorf("%w: partition %d: state covers seq %d, not in the log: %v", errSnapshotUnusable, p.id, p.seq, err)
		}
		same := xxhash.Sum64(v) == p.lastHash
		closer.Close()
		if !same {
			return fmt.Errorf("%w: partition %d: the log's event %d is not the one the snapshot covers (another store's snapshot?)", errSnapshotUnusable, p.id, p.seq)
		}
	}
	lo := eventKey(nil, p.id, p.seq+1)
	hi := eventKey(nil, p.id+1, 0)
	it, err := e.rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	var ev hunt.Event
	var want, bk []byte
	for it.First(); it.Valid(); it.Next() {
		if e.snap.upTo != nil && p.seq >= e.snap.upTo[p.id] {
			break
		}
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read %x: %w", k, err)
		}
		if err := hunt.DecodeEvent(v, &ev); err != nil {
			return fmt.Errorf("%w: key %x: %v", ErrCorrupt, k, err)
		}
		want = eventKey(want[:0], ev.Epoch.Partition, ev.Epoch.Seq)
		if len(k) != eventKeyLen || !bytes.Equal(k, want) {
			return fmt.Errorf("%w: key %x holds event %v", ErrCorrupt, k, ev.Epoch)
		}
		spot := noSpot
		if ev.Kind == hunt.KindClaimCompleted {
			if he := e.hunts.get(ev.Hunt); he != nil {
				if i, ok := e.spots.find(he.ord, string(ev.Hotspot)); ok {
					spot = i
				}
			}
		}
		granted, err := p.apply(&ev, spot)
		if err != nil {
			return fmt.Errorf("%w: key %x: %v", ErrCorrupt, k, err)
		}
		e.publish(&ev, spot, granted)
		p.lastSeq.Store(uint64(p.seq))
		p.lastAt.Store(ev.At.UnixNano())
		if idem {
			bk = bloomKey(bk[:0], idemKey{ev.Player, ev.Key})
			e.idem.noteLoaded(bk, e.idem.bucketOf(ev.At))
		}
	}
	return it.Error()
}
