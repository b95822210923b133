// Package hunt is Cairn's domain: hunts, hotspots, claims, spends, their
// outcomes and the events that record them.
//
// Everything here is pure: decisions are functions of (state, command, now)
// and return an outcome; nothing does IO or reads the clock, so the engines,
// the replay and the audit all agree by construction (invariant I7).
// Values are plain data and safe to copy; nothing here is safe for concurrent
// mutation without the caller's own ownership rule (one writer per partition).
package hunt

import (
	"fmt"
	"math"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
)

// Identifiers. They are distinct types so a player can never be passed as a hotspot.
type (
	HuntID    string
	HotspotID string
	PlayerID  string
)

// Seq is a per-partition log sequence number; the first event of a partition is 1.
type Seq uint64

// Epoch names one event of the log: its partition and sequence number.
type Epoch struct {
	Partition geo.Partition `json:"partition"`
	Seq       Seq           `json:"seq"`
}

// Limits on everything that comes from outside. Units are in the names.
const (
	IDLenMax            = 128
	NameLenMax          = 200
	KeyLenMax           = 255
	ReasonLenMax        = 200
	TicketsMax          = 1_000_000_000
	RewardMax           = 1_000_000_000
	PointsMax           = 1_000_000_000
	AmountMax           = 1_000_000_000_000
	ClaimRadiusMMax     = 100_000
	ClaimRadiusMDefault = 50
	MaxSpeedMpsMax      = 10_000
	// MaxSpeedMpsDefault is the maximum speed of a hunt created without
	// max_speed_mps: 50 m/s is 180 km/h. Nobody on foot (a sprinter peaks
	// at ~12 m/s) or by car in a city (urban motorways are limited to
	// 90-130 km/h, 25-36 m/s) moves faster between two claims; a spoofed
	// position jumping across a city does. Claims within a second are
	// measured over a second (MovementGraceSecs), so GPS jitter of a few
	// metres between quick claims stays far below it.
	MaxSpeedMpsDefault = 50
	MovementGraceSecs  = 1 // implied speed is computed over at least this many seconds
)

// Hunt is one treasure hunt. Zero StartsAt/EndsAt mean "no bound".
type Hunt struct {
	ID           HuntID    `json:"id"`
	Name         string    `json:"name"`
	StartsAt     time.Time `json:"starts_at,omitzero"`
	EndsAt       time.Time `json:"ends_at,omitzero"`
	ClaimRadiusM float64   `json:"claim_radius_m"`
	// MaxSpeedMps bounds the speed implied by a player's consecutive
	// grants (implausible_movement beyond it); 0 is no check. The API
	// fills MaxSpeedMpsDefault when a definition leaves it out, so only a
	// hunt that asks for it runs without the check. Stored hunts keep the
	// value they were stored with.
	MaxSpeedMps float64 `json:"max_speed_mps"`
	// FeedShowsPlayerIDs opts the hunt's live feed in to showing player
	// ids; by default the feed shows a pseudonym per player and hunt.
	// Absent from hunts stored before it existed, which is false: private.
	FeedShowsPlayerIDs bool `json:"feed_shows_player_ids,omitempty"`
}

// Hotspot is a place with tickets. Geohash is derived from Lat/Lon by Normalize.
type Hotspot struct {
	Hunt     HuntID    `json:"-"`
	ID       HotspotID `json:"id"`
	Lat      float64   `json:"lat"`
	Lon      float64   `json:"lon"`
	Tickets  int64     `json:"tickets"`
	Reward   int64     `json:"reward"`
	Points   int64     `json:"points"`
	OpensAt  time.Time `json:"opens_at,omitzero"`
	ClosesAt time.Time `json:"closes_at,omitzero"`
	Geohash  string    `json:"-"`
}

// HotspotView is a hotspot as the nearby query answers it.
type HotspotView struct {
	Hotspot
	TicketsLeft int64   `json:"tickets_left"`
	DistanceM   float64 `json:"distance_m"`
}

// ValidID reports whether s is 1..IDLenMax characters of [A-Za-z0-9._:-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > IDLenMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidKey reports whether s is an acceptable Idempotency-Key: 1..255 visible ASCII characters.
func ValidKey(s string) bool {
	if len(s) == 0 || len(s) > KeyLenMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Normalize fills defaults (claim radius) and checks every field.
func (h *Hunt) Normalize() error {
	if !ValidID(string(h.ID)) {
		return invalid("id", "must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", IDLenMax)
	}
	if len(h.Name) > NameLenMax {
		return invalid("name", "longer than %d bytes", NameLenMax)
	}
	if h.ClaimRadiusM == 0 {
		h.ClaimRadiusM = ClaimRadiusMDefault
	}
	if !finite(h.ClaimRadiusM) || h.ClaimRadiusM <= 0 || h.ClaimRadiusM > ClaimRadiusMMax {
		return invalid("claim_radius_m", "must be in (0, %d]", ClaimRadiusMMax)
	}
	if !finite(h.MaxSpeedMps) || h.MaxSpeedMps < 0 || h.MaxSpeedMps > MaxSpeedMpsMax {
		return invalid("max_speed_mps", "must be in [0, %d]", MaxSpeedMpsMax)
	}
	if !h.StartsAt.IsZero() && !h.EndsAt.IsZero() && !h.EndsAt.After(h.StartsAt) {
		return invalid("ends_at", "must be after starts_at")
	}
	return nil
}

// Normalize checks every field, rounds the coordinates to 1e-7 degree and
// derives the geohash.
func (s *Hotspot) Normalize() error {
	if !ValidID(string(s.ID)) {
		return invalid("id", "must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", IDLenMax)
	}
	if !geo.ValidCoord(s.Lat, s.Lon) {
		return invalid("lat/lon", "must be finite, lat in [-90, 90], lon in [-180, 180]")
	}
	if s.Tickets < 0 || s.Tickets > TicketsMax {
		return invalid("tickets", "must be in [0, %d]", TicketsMax)
	}
	if s.Reward < 0 || s.Reward > RewardMax {
		return invalid("reward", "must be in [0, %d]", RewardMax)
	}
	if s.Points < 0 || s.Points > PointsMax {
		return invalid("points", "must be in [0, %d]", PointsMax)
	}
	if !s.OpensAt.IsZero() && !s.ClosesAt.IsZero() && !s.ClosesAt.After(s.OpensAt) {
		return invalid("closes_at", "must be after opens_at")
	}
	// Kept at 1e-7 degree (about 1 cm), the precision the engines store.
	s.Lat, s.Lon = geo.RoundE7(s.Lat), geo.RoundE7(s.Lon)
	s.Geohash = geo.Encode(s.Lat, s.Lon, geo.GeohashLen)
	return nil
}

// ClaimRequest is the command a player sends at a hotspot.
type ClaimRequest struct {
	Player  PlayerID
	Key     string
	Hunt    HuntID
	Hotspot HotspotID
	Lat     float64
	Lon     float64
}

// Fingerprint identifies the request's content, so a reused Idempotency-Key
// with another hotspot or body is told apart from a retry (FNV-1a 64).
func (r *ClaimRequest) Fingerprint() uint64 {
	h := fnvOffset
	h = fnvString(h, string(r.Hunt))
	h = fnvByte(h, 0)
	h = fnvString(h, string(r.Hotspot))
	h = fnvByte(h, 0)
	h = fnvUint64(h, math.Float64bits(r.Lat))
	h = fnvUint64(h, math.Float64bits(r.Lon))
	return h | 1 // never 0, so 0 can mean "none"
}

// Check validates a claim request's fields.
func (r *ClaimRequest) Check() error {
	if !ValidKey(r.Key) {
		return ErrBadKey
	}
	if !ValidID(string(r.Player)) {
		return invalid("sub", "player id must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", IDLenMax)
	}
	if !ValidID(string(r.Hunt)) || !ValidID(string(r.Hotspot)) {
		return invalid("path", "hunt and hotspot ids must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", IDLenMax)
	}
	if !geo.ValidCoord(r.Lat, r.Lon) {
		return invalid("lat/lon", "must be finite, lat in [-90, 90], lon in [-180, 180]")
	}
	return nil
}

// SpendRequest is the command to spend from a wallet.
type SpendRequest struct {
	Player PlayerID
	Key    string
	Amount int64
	Reason string
}

// Fingerprint identifies the spend's content (see ClaimRequest.Fingerprint).
func (r *SpendRequest) Fingerprint() uint64 {
	h := fnvOffset
	h = fnvByte(h, 's')
	h = fnvUint64(h, uint64(r.Amount))
	h = fnvString(h, r.Reason)
	return h | 1
}

// Check validates a spend request's fields.
func (r *SpendRequest) Check() error {
	if !ValidKey(r.Key) {
		return ErrBadKey
	}
	if !ValidID(string(r.Player)) {
		return invalid("sub", "player id must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", IDLenMax)
	}
	if r.Amount <= 0 || r.Amount > AmountMax {
		return invalid("amount", "must be an integer in [1, %d]", AmountMax)
	}
	if len(r.Reason) > ReasonLenMax {
		return invalid("reason", "longer than %d bytes", ReasonLenMax)
	}
	return nil
}

// Position is where and when a player's last accepted claim was; zero At means none.
type Position struct {
	Lat, Lon float64
	At       time.Time
}

// Wallet is a player's balance and the epoch of the last event that changed it.
type Wallet struct {
	Player  PlayerID `json:"player"`
	Balance int64    `json:"balance"`
	Epoch   Epoch    `json:"epoch"`
}

// LedgerEntry is one change of a wallet: a grant's reward (positive) or a spend (negative).
type LedgerEntry struct {
	Epoch   Epoch     `json:"epoch"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // "claim" or "spend"
	Amount  int64     `json:"amount"`
	Hunt    HuntID    `json:"hunt,omitempty"`
	Hotspot HotspotID `json:"hotspot,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// ClaimResult is what a claim answers: the recorded event, and whether this
// answer is a replay of an earlier decision.
type ClaimResult struct {
	Event    Event
	Replayed bool
}

// SpendResult is what a spend answers (see ClaimResult).
type SpendResult struct {
	Event    Event
	Replayed bool
}

func (e Epoch) String() string { return fmt.Sprintf("%d.%d", e.Partition, e.Seq) }

const fnvOffset = uint64(14695981039346656037)
const fnvPrime = uint64(1099511628211)

func fnvByte(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime }
func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}
func fnvUint64(h uint64, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h = fnvByte(h, byte(v>>(8*i)))
	}
	return h
}
