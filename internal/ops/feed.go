package ops

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// claim is one claim decision as the console keeps it. Strings are the
// event's own (immutable); nothing else of the batch is kept.
type claim struct {
	cursor      uint64 // position in the ring, from 1, across every hunt
	at          time.Time
	huntID      hunt.HuntID
	hotspot     hunt.HotspotID
	player      hunt.PlayerID
	outcome     hunt.Outcome
	lat, lon    float64 // where the player claimed from
	geohash     string  // the hotspot's
	ticketsLeft int64
	points      int64
}

// ring holds the latest claim decisions of every hunt. add is called by the
// engine's commit path (the sink), so it takes one lock per batch and never
// allocates once the ring is full. It grows to its size as claims come (a
// server whose hunts see few claims does not pay for a full ring); claim
// cursor c sits at buf[(c-1) % size].
type ring struct {
	mu   sync.Mutex
	size int
	buf  []claim // len(buf) <= size; full once claims reach size
	next uint64  // cursor of the next claim; the ring holds [next-len(buf), next)
}

func newRing(n int) *ring { return &ring{size: n, next: 1} }

func (r *ring) at(c uint64) *claim { return &r.buf[(c-1)%uint64(r.size)] }

func (r *ring) add(batch []hunt.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range batch {
		ev := &batch[i]
		if ev.Kind != hunt.KindClaimCompleted {
			continue
		}
		c := claim{cursor: r.next, at: ev.At, huntID: ev.Hunt, hotspot: ev.Hotspot,
			player: ev.Player, outcome: ev.Outcome, lat: ev.Lat, lon: ev.Lon, geohash: ev.Geohash,
			ticketsLeft: ev.TicketsLeft, points: ev.Points}
		if len(r.buf) < r.size {
			r.buf = append(r.buf, c)
		} else {
			*r.at(r.next) = c
		}
		r.next++
	}
}

// oldest is the cursor of the oldest claim still held.
func (r *ring) oldest() uint64 {
	if n := uint64(len(r.buf)); r.next > n {
		return r.next - n
	}
	return 1
}

// newest is the cursor of the newest claim held (0: none yet).
func (r *ring) newest() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next - 1
}

// since calls fn for the held claims after cursor `after`, oldest first, and
// returns the cursor to ask from next time and whether claims were lost
// (after is older than the ring). fn runs under the ring's lock: keep it short.
func (r *ring) since(after uint64, fn func(*claim)) (next uint64, lost bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	from := after + 1
	if old := r.oldest(); from < old {
		from, lost = old, after != 0
	}
	for c := from; c < r.next; c++ {
		fn(r.at(c))
	}
	return r.next - 1, lost
}

// firstReadLen is how many of the ring's newest claims a first read (no
// cursor) looks through: the ring is read under the lock the sink takes.
const firstReadLen = 4096

// wireClaim is a claim in a /claims answer.
type wireClaim struct {
	At          time.Time `json:"at"`
	Hotspot     string    `json:"hotspot"`
	Player      string    `json:"player"`
	Outcome     string    `json:"outcome"`
	Lat         float64   `json:"lat"`
	Lon         float64   `json:"lon"`
	TicketsLeft int64     `json:"tickets_left"`
	Points      int64     `json:"points"`
}

// serveClaims answers GET /ops/api/hunts/{hunt}/claims?after=CURSOR: the
// hunt's claim decisions recorded after the cursor (the newest
// ClaimsPageMax of them), and the cursor to ask from next. Without after (or
// 0) it answers the latest ones. `lost` says the ring overwrote some claims
// since the cursor.
func (o *Ops) serveClaims(w http.ResponseWriter, r *http.Request) error {
	h, err := o.huntOf(r)
	if err != nil {
		return err
	}
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return invalid("after must be a cursor from a previous answer (a non-negative integer)")
		}
	}
	first := after == 0
	if n := o.ring.newest(); first && n > firstReadLen {
		after = n - firstReadLen // a first read looks at the latest claims only, not the whole ring
	}
	// The newest ClaimsPageMax: a circular buffer, put in order at the end.
	out := make([]wireClaim, 0, 64)
	n := 0
	next, lost := o.ring.since(after, func(c *claim) {
		if c.huntID != h.ID {
			return
		}
		wc := wireClaim{At: c.at, Hotspot: string(c.hotspot), Player: string(c.player),
			Outcome: c.outcome.String(), Lat: c.lat, Lon: c.lon, TicketsLeft: c.ticketsLeft, Points: c.points}
		if len(out) < ClaimsPageMax {
			out = append(out, wc)
		} else {
			out[n%ClaimsPageMax] = wc
		}
		n++
	})
	if n > ClaimsPageMax {
		k := n % ClaimsPageMax
		out = slices.Concat(out[k:], out[:k])
	}
	lost = lost && !first
	return writeJSON(w, struct {
		Cursor uint64      `json:"cursor"`
		Lost   bool        `json:"lost"`
		Claims []wireClaim `json:"claims"`
	}{next, lost, out})
}
