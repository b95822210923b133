package redis

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The text formats shared with cairn.lua (its header lists them). They are
// space-separated because every field but the last is free of spaces: ids
// are [A-Za-z0-9._:-], Idempotency-Keys are visible ASCII, numbers are
// decimal; the one free-text field (a spend's reason) comes last.

// eventVersion is the first field of every event record in a log stream.
const eventVersion = "1"

// eventFields is the number of fields of an event record, reason included.
const eventFields = 20

// errCorrupt reports a record or answer that does not parse: a bug or a
// library/node version mismatch, never an operating condition.
var errCorrupt = errors.New("redis engine: corrupt record")

// decodeEvent parses an event record written by cairn.lua into e.
func decodeEvent(s string, e *hunt.Event) error {
	f := strings.SplitN(s, " ", eventFields)
	if len(f) != eventFields || f[0] != eventVersion {
		return fmt.Errorf("%w: event %q", errCorrupt, s)
	}
	var bad bool
	num := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		bad = bad || err != nil
		return v
	}
	flt := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		bad = bad || err != nil
		return v
	}
	kind, outcome := num(f[1]), num(f[2])
	p, seq := num(f[3]), num(f[4])
	fp, err := strconv.ParseUint(f[8], 10, 64)
	bad = bad || err != nil
	*e = hunt.Event{
		Kind:        hunt.EventKind(kind),
		Epoch:       hunt.Epoch{Partition: geo.Partition(p), Seq: hunt.Seq(seq)},
		At:          time.UnixMilli(num(f[5])).UTC(),
		Player:      hunt.PlayerID(f[6]),
		Key:         f[7],
		Fingerprint: fp,
		Outcome:     hunt.Outcome(outcome),
		Hunt:        hunt.HuntID(f[9]),
		Hotspot:     hunt.HotspotID(f[10]),
		Lat:         flt(f[11]),
		Lon:         flt(f[12]),
		Geohash:     f[13],
		Reward:      num(f[14]),
		Points:      num(f[15]),
		TicketsLeft: num(f[16]),
		Amount:      num(f[17]),
		Balance:     num(f[18]),
		Reason:      f[19],
	}
	if bad || (e.Kind != hunt.KindClaimCompleted && e.Kind != hunt.KindSpendCompleted) || !e.Outcome.Valid() ||
		!geo.ValidCoord(e.Lat, e.Lon) || math.IsInf(e.Lat, 0) || math.IsInf(e.Lon, 0) ||
		p < 0 || p > geo.PartitionsMax || seq <= 0 {
		return fmt.Errorf("%w: event %q", errCorrupt, s)
	}
	return nil
}

// answer is a Function's reply (or the message it published): the decision
// and the request id that made it, or an error code.
type answer struct {
	rid   string // the request that was decided; another rid than the caller's means a replay
	event string // the event record
	code  string // set for errors: unknown_hunt, unknown_hotspot, key_reused, dead_letter
}

func parseAnswer(s string) (answer, error) {
	head, rest, ok := strings.Cut(s, " ")
	switch {
	case ok && head == "ok":
		rid, ev, ok := strings.Cut(rest, " ")
		if ok && rid != "" {
			return answer{rid: rid, event: ev}, nil
		}
	case ok && head == "err" && rest != "":
		return answer{code: rest}, nil
	}
	return answer{}, fmt.Errorf("%w: answer %q", errCorrupt, s)
}

// codeErr maps a Function's error code to the engine's errors.
func codeErr(code string) error {
	switch code {
	case "unknown_hunt":
		return hunt.ErrUnknownHunt
	case "unknown_hotspot":
		return hunt.ErrUnknownHotspot
	case "key_reused":
		return hunt.ErrKeyReused
	case "dead_letter":
		return fmt.Errorf("%w: the request was moved to the dead-letter stream", engine.ErrUnavailable)
	}
	return fmt.Errorf("%w: unknown error code %q", errCorrupt, code)
}

// decodeLedger parses a ledger record written by cairn.lua.
func decodeLedger(s string) (hunt.LedgerEntry, error) {
	f := strings.SplitN(s, " ", 8)
	if len(f) != 8 || (f[0] != "claim" && f[0] != "spend") {
		return hunt.LedgerEntry{}, fmt.Errorf("%w: ledger %q", errCorrupt, s)
	}
	p, err1 := strconv.ParseUint(f[1], 10, 32)
	seq, err2 := strconv.ParseUint(f[2], 10, 64)
	at, err3 := strconv.ParseInt(f[3], 10, 64)
	amount, err4 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return hunt.LedgerEntry{}, fmt.Errorf("%w: ledger %q: %v", errCorrupt, s, err)
	}
	return hunt.LedgerEntry{
		Epoch:   hunt.Epoch{Partition: geo.Partition(p), Seq: hunt.Seq(seq)},
		At:      time.UnixMilli(at).UTC(),
		Kind:    f[0],
		Amount:  amount,
		Hunt:    hunt.HuntID(f[5]),
		Hotspot: hunt.HotspotID(f[6]),
		Reason:  f[7],
	}, nil
}

// formatNS20 writes t as ns20: 20-digit unix nanoseconds, which cairn.lua compares as
// strings (exact, where a Lua number would round). The zero time is "" (no
// bound); times before 1970 clamp to 0, which orders the same against any
// later now.
func formatNS20(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	switch {
	case t.Year() < 1970:
		return fmt.Sprintf("%020d", 0)
	case t.Year() >= 2262: // past UnixNano's range: every now of this engine's life is before it
		return fmt.Sprintf("%020d", int64(math.MaxInt64))
	}
	return fmt.Sprintf("%020d", t.UnixNano())
}

// parseNS20 is the inverse of formatNS20 (zero for "").
func parseNS20(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q", errCorrupt, s)
	}
	return time.Unix(0, ns).UTC(), nil
}

// formatFloat writes f in Go's shortest round-trip form: Lua's tonumber reads it back to the same bits.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// streamSeq is the sequence number a log stream id "<seq>-0" stands for.
func streamSeq(id string) (hunt.Seq, error) {
	ms, rest, ok := strings.Cut(id, "-")
	v, err := strconv.ParseUint(ms, 10, 64)
	if !ok || rest != "0" || err != nil || v == 0 {
		return 0, fmt.Errorf("%w: log stream id %q", errCorrupt, id)
	}
	return hunt.Seq(v), nil
}
