package hunt

import (
	"time"

	"github.com/cairnhq/cairn/internal/geo"
)

// Outcome is the decision on a claim or a spend.
type Outcome uint8

// Outcomes. The numbers are stored in the log: append only, never renumber.
const (
	OutcomeNone Outcome = iota
	Granted
	AlreadyClaimed
	SoldOut
	TooFar
	NotOpen
	ImplausibleMovement
	InsufficientFunds
	Spent
	outcomeEnd
)

var outcomeNames = [...]string{
	OutcomeNone:         "none",
	Granted:             "granted",
	AlreadyClaimed:      "already_claimed",
	SoldOut:             "sold_out",
	TooFar:              "too_far",
	NotOpen:             "not_open",
	ImplausibleMovement: "implausible_movement",
	InsufficientFunds:   "insufficient_funds",
	Spent:               "spent",
}

func (o Outcome) String() string {
	if o < outcomeEnd {
		return outcomeNames[o]
	}
	return "unknown"
}

// Valid reports whether o is a known outcome other than OutcomeNone.
func (o Outcome) Valid() bool { return o > OutcomeNone && o < outcomeEnd }

// ParseOutcome is the inverse of String.
func ParseOutcome(s string) (Outcome, bool) {
	for i, n := range outcomeNames {
		if n == s && i != int(OutcomeNone) {
			return Outcome(i), true
		}
	}
	return OutcomeNone, false
}

// Effective reports whether the outcome changed state (a grant or an accepted spend).
func (o Outcome) Effective() bool { return o == Granted || o == Spent }

// ClaimState is what a partition knows when it decides one claim.
type ClaimState struct {
	Hunt           *Hunt
	Hotspot        *Hotspot
	Granted        int64    // tickets of this hotspot already granted
	AlreadyClaimed bool     // this player holds a ticket of this hotspot
	Last           Position // the player's last granted claim in this hunt
}

// DecideClaim decides a claim. It is pure and does not allocate. The order of
// the checks is part of the contract: not_open, already_claimed, sold_out,
// too_far, implausible_movement, then granted.
func DecideClaim(st *ClaimState, req *ClaimRequest, now time.Time) Outcome {
	h, s := st.Hunt, st.Hotspot
	if (!h.StartsAt.IsZero() && now.Before(h.StartsAt)) || (!h.EndsAt.IsZero() && !now.Before(h.EndsAt)) ||
		(!s.OpensAt.IsZero() && now.Before(s.OpensAt)) || (!s.ClosesAt.IsZero() && !now.Before(s.ClosesAt)) {
		return NotOpen
	}
	if st.AlreadyClaimed {
		return AlreadyClaimed
	}
	if st.Granted >= s.Tickets {
		return SoldOut
	}
	if geo.DistanceM(req.Lat, req.Lon, s.Lat, s.Lon) > h.ClaimRadiusM {
		return TooFar
	}
	if h.MaxSpeedMps > 0 && !st.Last.At.IsZero() {
		dt := now.Sub(st.Last.At).Seconds()
		if dt < MovementGraceSecs {
			dt = MovementGraceSecs
		}
		if geo.DistanceM(st.Last.Lat, st.Last.Lon, req.Lat, req.Lon)/dt > h.MaxSpeedMps {
			return ImplausibleMovement
		}
	}
	return Granted
}

// DecideSpend decides a spend against a balance that can only have grown
// since it was read (credits commute; spends are serialized per player).
func DecideSpend(balance int64, req *SpendRequest) Outcome {
	if req.Amount > balance {
		return InsufficientFunds
	}
	return Spent
}
