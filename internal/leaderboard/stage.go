package leaderboard

import (
	"math"
	"strings"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Grants are applied in sets: everything one hold of the write lock applies
// (the inbox items drained together, or one chunk of a Rebuild) is first
// staged, summing the points per (board, player), then flushed with one
// skiplist operation per distinct (board, player): an insert for a player
// new on that board, a score change for one already there. Scores are sums,
// so the order of the grants inside a set does not matter; the set is
// flushed before the lock is released, so no read sees it half applied.
//
// Staging reuses its buffers from one set to the next and allocates nothing
// once they have grown, except the nodes of players new on a board.

// move is one (board, player) whose score the set changes.
type move struct {
	b     *board
	x     *node
	score int64 // x's score before the set (0 for a fresh x)
	delta int64
	fresh bool // x is new on b: in b.nodes already, linked by flush
}

// stager holds a set being staged. It is guarded by the Projection's write
// lock.
//
// A staged node is marked in its own score field: while a set is staged no
// list is searched or changed (staging only looks players up in the boards'
// maps), so the field is free to hold stagedMark + the node's index in
// moves, and flush puts the score back (from the move) before it touches a
// list. Finding a staged node again thus costs nothing: a map from nodes to
// moves cost more than the repeats it merged (most sets hold each (board,
// player) once), and a field of its own would grow every node by a size
// class. Scores are sums of points, which are never negative (hotspots are
// validated on import), so no score reaches the marks at the bottom of int64.
type stager struct {
	moves []move
	seeks [2 * flushGroupMax]seek // scratch of flushGroup
}

const (
	stagedMark = math.MinInt64
	stagedEnd  = stagedMark + math.MaxInt32 // marks are in [stagedMark, stagedEnd)
)

// stagedAt returns the index in moves of a staged node.
func stagedAt(x *node) (int, bool) {
	if x.score < stagedEnd {
		return int(x.score - stagedMark), true
	}
	return 0, false
}

// flushGroupMax bounds the moves whose descents run in lockstep. A grant's
// moves are on distinct boards (its chain), which is what a group needs, so
// groups are usually one grant's chain: 1 + RegionLenMax moves.
const flushGroupMax = 8

// stageLocked adds a grant's points to the set, for its hunt's global board
// and every region board containing its hotspot.
func (p *Projection) stageLocked(g *grant) {
	st := &p.mu.stage
	// id becomes the projection's own copy of the player id, shared by the
	// player's nodes on every board of the hunt: the one on the global board
	// (the chain's first) if the player is there, else a clone made here,
	// so a board never pins a larger buffer the event's id may share.
	id, own := g.player, false
	for _, b := range p.chainLocked(g.hunt, g.geohash) {
		x, ok := b.nodes[g.player]
		if !ok {
			if !own {
				id, own = hunt.PlayerID(strings.Clone(string(g.player))), true
			}
			// Ranked even with zero points: a player with a grant is ranked.
			x = b.enter(id)
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
}

// flushLocked applies the staged set to the skiplists and empties it, a
// group of moves on distinct boards at a time.
func (p *Projection) flushLocked() {
	st := &p.mu.stage
	for i := range st.moves {
		st.moves[i].x.score = st.moves[i].score // unmark
	}
	for i := 0; i < len(st.moves); {
		j := i + 1
		for j < len(st.moves) && j-i < flushGroupMax && !onBoards(st.moves[i:j], st.moves[j].b) {
			j++
		}
		st.flushGroup(st.moves[i:j])
		i = j
	}
	st.moves = st.moves[:0]
}

func onBoards(g []move, b *board) bool {
	for i := range g {
		if g[i].b == b {
			return true
		}
	}
	return false
}

// flushGroup applies moves that are all on distinct boards: first the
// descents of every move, in lockstep (seekAll), then the relinks one by
// one. A relink only changes its own board, so the other moves' descents
// stay valid.
func (st *stager) flushGroup(g []move) {
	const none = -1
	var seekNew, seekOld [flushGroupMax]int
	ns := 0
	for k := range g {
		m := &g[k]
		seekNew[k], seekOld[k] = none, none
		l := &m.b.list
		switch {
		case m.fresh:
			m.x.score = m.delta
			seekNew[k] = ns
			st.seeks[ns].init(l, m.x.score, m.x.tie, m.x.player)
			ns++
		case m.delta == 0:
		case m.delta < 0 || l.stays(m.x, m.x.score+m.delta):
			l.setScore(m.x, m.x.score+m.delta) // in place, or (never for grants) down
		default:
			seekNew[k], seekOld[k] = ns, ns+1
			st.seeks[ns].init(l, m.x.score+m.delta, m.x.tie, m.x.player)
			st.seeks[ns+1].init(l, m.x.score, m.x.tie, m.x.player)
			ns += 2
		}
	}
	seekAll(st.seeks[:ns])
	for k := range g {
		m := &g[k]
		switch {
		case seekOld[k] != none:
			m.b.list.moveUp(m.x, m.x.score+m.delta, &st.seeks[seekNew[k]], &st.seeks[seekOld[k]])
		case seekNew[k] != none:
			s := &st.seeks[seekNew[k]]
			m.b.list.link(m.x, &s.update, &s.rank)
		}
	}
}

// chainLocked returns the boards a grant of hunt h at a hotspot with this
// geohash credits (the board's chain), creating them on first use: one map
// lookup per grant instead of one per board.
func (p *Projection) chainLocked(h hunt.HuntID, geohash string) []*board {
	region := geohash[:min(len(geohash), p.regionLenMax)]
	b := p.boardLocked(h, region)
	if b.chain == nil {
		chain := make([]*board, 0, 1+len(region))
		for n := 0; n < len(region); n++ {
			chain = append(chain, p.boardLocked(h, region[:n]))
		}
		b.chain = append(chain, b)
	}
	return b.chain
}
