package hunt

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
)

// EventKind tells the two kinds of log record apart. Stored: never renumber.
type EventKind uint8

const (
	KindClaimCompleted EventKind = 1
	KindSpendCompleted EventKind = 2
)

// Event is one record of a partition's log: a decision, never a command.
// Replay applies its recorded Outcome and never decides again (I7).
//
// A claim event carries the hotspot's Reward and Points as they were when it
// was decided; a rejected claim carries them as zero. A spend event carries
// Amount, Reason and the wallet's Balance right after it.
type Event struct {
	Kind        EventKind
	Epoch       Epoch
	At          time.Time // when it was decided (ms precision in the log)
	Player      PlayerID
	Key         string // the request's Idempotency-Key
	Fingerprint uint64 // the request's Fingerprint
	Outcome     Outcome

	// Claims.
	Hunt        HuntID
	Hotspot     HotspotID
	Lat, Lon    float64 // where the player claimed from
	Geohash     string  // the hotspot's geohash (regions of the leaderboard)
	Reward      int64
	Points      int64
	TicketsLeft int64

	// Spends.
	Amount  int64
	Reason  string
	Balance int64
}

// ClaimID is the stable public id of a claim: its epoch.
func (e *Event) ClaimID() string { return e.Epoch.String() }

// Credit is the wallet change this event makes: +Reward for a grant, -Amount for a spend, else 0.
func (e *Event) Credit() int64 {
	switch {
	case e.Kind == KindClaimCompleted && e.Outcome == Granted:
		return e.Reward
	case e.Kind == KindSpendCompleted && e.Outcome == Spent:
		return -e.Amount
	}
	return 0
}

const eventVersion = 1

// Encoding limits; a record that exceeds them is corrupt.
const (
	EventLenMax = 4096
	strLenMax   = 1024
)

// ErrCorruptEvent reports a log record that does not decode.
var ErrCorruptEvent = errors.New("corrupt event record")

// AppendEvent appends the binary form of e to dst. The format (docs/FORMATS.md):
// version byte, kind, outcome, uvarint partition, uvarint seq, varint unix ms,
// then length-prefixed player, key, hunt, hotspot, geohash, reason, then
// fingerprint (8 bytes LE), lat, lon (float64 bits LE), and varints reward,
// points, tickets_left, amount, balance.
func AppendEvent(dst []byte, e *Event) []byte {
	dst = append(dst, eventVersion, byte(e.Kind), byte(e.Outcome))
	dst = binary.AppendUvarint(dst, uint64(e.Epoch.Partition))
	dst = binary.AppendUvarint(dst, uint64(e.Epoch.Seq))
	dst = binary.AppendVarint(dst, e.At.UnixMilli())
	for _, s := range [...]string{string(e.Player), e.Key, string(e.Hunt), string(e.Hotspot), e.Geohash, e.Reason} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.LittleEndian.AppendUint64(dst, e.Fingerprint)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.Lat))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.Lon))
	for _, v := range [...]int64{e.Reward, e.Points, e.TicketsLeft, e.Amount, e.Balance} {
		dst = binary.AppendVarint(dst, v)
	}
	return dst
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err || n > strLenMax || n > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.err = true
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// DecodeEvent decodes a record written by AppendEvent into e. It never panics;
// anything malformed, truncated or trailing returns ErrCorruptEvent.
func DecodeEvent(b []byte, e *Event) error {
	if len(b) < 3 || len(b) > EventLenMax || b[0] != eventVersion {
		return ErrCorruptEvent
	}
	e.Kind, e.Outcome = EventKind(b[1]), Outcome(b[2])
	if (e.Kind != KindClaimCompleted && e.Kind != KindSpendCompleted) || !e.Outcome.Valid() {
		return ErrCorruptEvent
	}
	d := decoder{b: b[3:]}
	p := d.uvarint()
	e.Epoch = Epoch{Partition: geo.Partition(p), Seq: Seq(d.uvarint())}
	e.At = time.UnixMilli(d.varint()).UTC()
	e.Player = PlayerID(d.str())
	e.Key = d.str()
	e.Hunt = HuntID(d.str())
	e.Hotspot = HotspotID(d.str())
	e.Geohash = d.str()
	e.Reason = d.str()
	e.Fingerprint = d.u64()
	e.Lat = math.Float64frombits(d.u64())
	e.Lon = math.Float64frombits(d.u64())
	e.Reward, e.Points, e.TicketsLeft, e.Amount, e.Balance = d.varint(), d.varint(), d.varint(), d.varint(), d.varint()
	if d.err || len(d.b) != 0 || p > math.MaxUint32 {
		return ErrCorruptEvent
	}
	return nil
}
