package leaderboard

import (
	"math"
	"strings"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Grants are applied in sets: everything one hold of the write lock applies
// (the inbox items drained together, or one chunk of a Rebuild) is first
// staged, summing the points per (board, player), then flushed with one
// tree operation per distinct (board, player): an insert for a player
// new on that board, a score change for one already there. Scores are sums,
// so the order of the grants inside a set does not matter; the set is
// flushed before the lock is released, so no read sees it half applied.
//
// Staging reuses its buffers from one set to the next and allocates nothing
// once they have grown, except the entries of players new on a board (from
// a slab) and the tree nodes their inserts split.

// move is one (board, player) whose score the set changes.
type move struct {
	b     *board
	x     *entry
	score int64 // x's score before the set (0 for a fresh x)
	delta int64
	fresh bool // x is new on b: in b.byPlayer already, linked by flush
}

// stager holds a set being staged. It is guarded by the Projection's write
// lock.
//
// A staged entry is marked in its own score field: while a set is staged no
// tree is searched or changed (staging only looks players up in the boards'
// maps), so the field is free to hold stagedMark + the entry's index in
// moves, and flush puts the score back (from the move) before it touches a
// tree. Finding a staged entry again thus costs nothing: a map from entries
// to moves cost more than the repeats it merged (most sets hold each (board,
// player) once), and a field of its own would grow every entry. Scores are
// sums of points, which are never negative (hotspots are validated on
// import), so no score reaches the marks at the bottom of int64.
type stager struct {
	moves []move
	slab  []entry // entries for players new on a board, handed out in order
}

const (
	stagedMark = math.MinInt64
	stagedEnd  = stagedMark + math.MaxInt32 // marks are in [stagedMark, stagedEnd)
	slabLen    = 256                        // entries per allocation
)

// stagedAt returns the index in moves of a staged entry.
func stagedAt(x *entry) (int, bool) {
	if x.score < stagedEnd {
		return int(x.score - stagedMark), true
	}
	return 0, false
}

// newEntry hands out an entry from the slab: one allocation per slabLen new
// (player, board) pairs instead of one each. Boards are never removed, so a
// slab lives as long as its entries would have.
func (st *stager) newEntry() *entry {
	if len(st.slab) == 0 {
		st.slab = make([]entry, slabLen)
	}
	x := &st.slab[0]
	st.slab = st.slab[1:]
	return x
}

// stageLocked adds a grant's points to the set, for its hunt's global board
// and every materialised region board containing its hotspot, and to its
// cell's sum (region.go).
func (p *Projection) stageLocked(g *grant) {
	st := &p.mu.stage
	// id becomes the projection's own copy of the player id, shared by the
	// player's entries on every board of the hunt and the cells' sums: the
	// one on the global board (the chain's first) if the player is there,
	// else a clone made here, so a board never pins a larger buffer the
	// event's id may share.
	id, own := g.player, false
	c := p.cellLocked(g.hunt, g.geohash)
	for _, b := range c.chain {
		if b == nil {
			continue // not materialised: the cell's sum below is enough
		}
		x, ok := b.byPlayer[g.player]
		if !ok {
			if !own {
				id, own = hunt.PlayerID(strings.Clone(string(g.player))), true
			}
			// Ranked even with zero points: a player with a grant is ranked.
			x = st.newEntry()
			b.enter(x, id)
			x.score = stagedMark + int64(len(st.moves))
			st.moves = append(st.moves, move{b: b, x: x, delta: g.points, fresh: true})
			continue
		}
		if !own {
			id, own = x.player, true
		}
		if i, ok := stagedAt(x); ok {
			st.moves[i].delta += g.points
		} else if g.points != 0 {
			st.moves = append(st.moves, move{b: b, x: x, score: x.score, delta: g.points})
			x.score = stagedMark + int64(len(st.moves)-1)
		}
	}
	// Sums commute, so the cell is credited at once; nothing reads it before
	// the set is flushed (materialising takes the write lock).
	c.scores[id] += g.points
}

// flushLocked applies the staged set to the trees and empties it: an insert
// per fresh entry, a score change per other.
func (p *Projection) flushLocked() {
	st := &p.mu.stage
	for i := range st.moves {
		st.moves[i].x.score = st.moves[i].score // unmark
	}
	for i := range st.moves {
		m := &st.moves[i]
		switch {
		case m.fresh:
			m.x.score = m.delta
			m.b.tree.insert(m.x)
		case m.delta != 0:
			m.b.tree.setScore(m.x, m.x.score+m.delta)
		}
	}
	st.moves = st.moves[:0]
}
