package leaderboard

import (
	"math/bits"
	"strings"

	"github.com/cairnhq/cairn/internal/hunt"
)

// The order-statistic structure is a skiplist whose links carry span widths,
// as Redis' sorted set (t_zset.c) does. A span is the number of level-0 steps
// a link jumps, so summing spans along a search path gives a node's rank, and
// walking down by spans finds the node of a rank; both are O(log n) expected.
//
// Why a skiplist and not an order-statistic treap: the leaderboard's reads are
// "page from rank r" and "window around player", i.e. one O(log n) descent
// followed by a level-0 walk; a skiplist gives that walk for free through its
// bottom list (a treap needs an in-order iterator with a stack). Updates reuse
// the node (unlink, change score, relink at its same height), so a score change
// never allocates; the shape is proven by Redis at this exact job.

const (
	skipLevelMax = 32 // enough for 2^64 entries at p = 1/4
)

type link struct {
	next *node
	span int // level-0 steps this link jumps; for a nil next, the steps to the end
}

// node is one (player, score) of a board.
type node struct {
	player hunt.PlayerID
	tie    uint64 // tieKey(player)
	score  int64
	back   *node // previous node at level 0; nil for the first
	level  []link
}

// before reports whether (s1, p1) ranks ahead of (s2, p2): higher score first,
// then the smaller player id. Player ids are unique on a board, so this is a
// strict total order and every player has exactly one rank.
//
// t1 and t2 are the players' tie keys (tieKey): comparing them first settles
// almost every tie of equal scores without a string comparison, the hot spot
// of a board where many players share a score.
func before(s1 int64, t1 uint64, p1 hunt.PlayerID, s2 int64, t2 uint64, p2 hunt.PlayerID) bool {
	if s1 != s2 {
		return s1 > s2
	}
	if t1 != t2 {
		return t1 < t2
	}
	return p1 < p2
}

// tieKey is the first 8 bytes of a player id, big-endian, zero-padded. Ids
// never contain 0x00 (hunt.ValidID), so tieKey(a) < tieKey(b) implies a < b
// and equal keys fall back to comparing the ids.
func tieKey(p hunt.PlayerID) uint64 {
	var k uint64
	for i := 0; i < 8; i++ {
		k <<= 8
		if i < len(p) {
			k |= uint64(p[i])
		}
	}
	return k
}

// newNode allocates a node with its links in the same allocation for the
// common heights (with p = 1/4, 98% of nodes have height <= 3).
func newNode(height int) *node {
	switch height {
	case 1:
		s := new(struct {
			n node
			l [1]link
		})
		s.n.level = s.l[:]
		return &s.n
	case 2:
		s := new(struct {
			n node
			l [2]link
		})
		s.n.level = s.l[:]
		return &s.n
	case 3:
		s := new(struct {
			n node
			l [3]link
		})
		s.n.level = s.l[:]
		return &s.n
	}
	return &node{level: make([]link, height)}
}

// skiplist is not safe for concurrent use; the Projection's lock guards it.
// It must not be copied after init (head.level points into headLinks).
type skiplist struct {
	head      node
	headLinks [skipLevelMax]link
	tail      *node
	length    int
	level     int    // levels in use, >= 1
	rng       uint64 // xorshift64 state, never 0
}

func (l *skiplist) init(seed uint64) {
	l.head.level = l.headLinks[:]
	l.level = 1
	l.rng = seed | 1
}

// randomHeight draws a height with P(h >= k+1) = 4^-k: every two trailing
// zero bits of a random word promote once.
func (l *skiplist) randomHeight() int {
	l.rng ^= l.rng << 13
	l.rng ^= l.rng >> 7
	l.rng ^= l.rng << 17
	h := 1 + bits.TrailingZeros64(l.rng)/2
	return min(h, skipLevelMax)
}

// insert links x (player, score and height set) at its place.
func (l *skiplist) insert(x *node) {
	var update [skipLevelMax]*node
	var rank [skipLevelMax]int
	cur := &l.head
	for i := l.level - 1; i >= 0; i-- {
		if i < l.level-1 {
			rank[i] = rank[i+1]
		}
		for n := cur.level[i].next; n != nil && before(n.score, n.tie, n.player, x.score, x.tie, x.player); n = cur.level[i].next {
			rank[i] += cur.level[i].span
			cur = n
		}
		update[i] = cur
	}
	l.link(x, &update, &rank)
}

// link links x after update[i] on every level i below its height; rank[i]
// is update[i]'s rank (0 for the head). Both describe x's key in the list
// as it is now (x not in it).
func (l *skiplist) link(x *node, update *[skipLevelMax]*node, rank *[skipLevelMax]int) {
	height := len(x.level)
	if height > l.level {
		for i := l.level; i < height; i++ {
			rank[i] = 0
			update[i] = &l.head
			l.head.level[i].span = l.length
		}
		l.level = height
	}
	for i := 0; i < height; i++ {
		x.level[i].next = update[i].level[i].next
		update[i].level[i].next = x
		x.level[i].span = update[i].level[i].span - (rank[0] - rank[i])
		update[i].level[i].span = rank[0] - rank[i] + 1
	}
	for i := height; i < l.level; i++ {
		update[i].level[i].span++
	}
	if update[0] == &l.head {
		x.back = nil
	} else {
		x.back = update[0]
	}
	if x.level[0].next != nil {
		x.level[0].next.back = x
	} else {
		l.tail = x
	}
	l.length++
}

// path fills update with the last node before (score, player) on every level.
func (l *skiplist) path(score int64, tie uint64, player hunt.PlayerID, update *[skipLevelMax]*node) {
	cur := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for n := cur.level[i].next; n != nil && before(n.score, n.tie, n.player, score, tie, player); n = cur.level[i].next {
			cur = n
		}
		update[i] = cur
	}
}

// unlink removes x, whose search path is update.
func (l *skiplist) unlink(x *node, update *[skipLevelMax]*node) {
	for i := 0; i < l.level; i++ {
		if update[i].level[i].next == x {
			update[i].level[i].span += x.level[i].span - 1
			update[i].level[i].next = x.level[i].next
		} else {
			update[i].level[i].span--
		}
	}
	if x.level[0].next != nil {
		x.level[0].next.back = x.back
	} else {
		l.tail = x.back
	}
	for l.level > 1 && l.head.level[l.level-1].next == nil {
		l.level--
	}
	l.length--
}

// setScore changes x's score: in place when its rank does not change, else
// unlink and relink the same node (no allocation either way). A raise (what
// every grant does) finds its new place and x's present one in two
// descents run in lockstep (seekAll).
func (l *skiplist) setScore(x *node, score int64) {
	if l.stays(x, score) {
		x.score = score
		return
	}
	if score > x.score {
		var ss [2]seek
		ss[0].init(l, score, x.tie, x.player)
		ss[1].init(l, x.score, x.tie, x.player)
		seekAll(ss[:])
		l.moveUp(x, score, &ss[0], &ss[1])
		return
	}
	var old [skipLevelMax]*node
	l.path(x.score, x.tie, x.player, &old)
	if old[0].level[0].next != x {
		panic("leaderboard: skiplist invariant: node not found at its own key")
	}
	l.unlink(x, &old)
	x.score = score
	l.insert(x)
}

// stays reports whether x keeps its rank with score: its neighbours decide,
// which costs no search.
func (l *skiplist) stays(x *node, score int64) bool {
	next := x.level[0].next
	return (x.back == nil || before(x.back.score, x.back.tie, x.back.player, score, x.tie, x.player)) &&
		(next == nil || before(score, x.tie, x.player, next.score, next.tie, next.player))
}

// moveUp gives x the higher score and moves it to its new place: nw is the
// finished seek of the new key, old that of x's present key. Unlinking x
// changes neither the nodes ahead of the new key nor their ranks, so nw,
// found before the unlink, is where to link.
func (l *skiplist) moveUp(x *node, score int64, nw, old *seek) {
	if old.update[0].level[0].next != x {
		panic("leaderboard: skiplist invariant: node not found at its own key")
	}
	l.unlink(x, &old.update)
	x.score = score
	l.link(x, &nw.update, &nw.rank)
}

// rank returns x's 1-based position.
func (l *skiplist) rank(x *node) int {
	r := 0
	cur := &l.head
	for i := l.level - 1; i >= 0; i-- {
		// Advance while the next node is at or before x.
		for n := cur.level[i].next; n != nil && !before(x.score, x.tie, x.player, n.score, n.tie, n.player); n = cur.level[i].next {
			r += cur.level[i].span
			cur = n
		}
		if cur == x {
			return r
		}
	}
	panic("leaderboard: skiplist invariant: node not reachable by its key")
}

// byRank returns the node at 1-based rank r, or nil when r is out of range.
func (l *skiplist) byRank(r int) *node {
	if r < 1 || r > l.length {
		return nil
	}
	traversed := 0
	cur := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for cur.level[i].next != nil && traversed+cur.level[i].span <= r {
			traversed += cur.level[i].span
			cur = cur.level[i].next
		}
		if traversed == r {
			return cur
		}
	}
	return nil
}

// board is one ranking: a hunt's global board or one region's.
type board struct {
	list  skiplist
	nodes map[hunt.PlayerID]*node
	// chain is every board a grant at a hotspot of this board's region
	// credits: the hunt's global board, then the regions of length 1 up to
	// this one's. Set by Projection.chainLocked when a grant first lands here.
	chain []*board
}

func newBoard(seed uint64) *board {
	b := &board{nodes: make(map[hunt.PlayerID]*node)}
	b.list.init(seed)
	return b
}

// add credits points to player, entering them on the board if new (even with
// zero points: a player with a grant is ranked).
func (b *board) add(player hunt.PlayerID, points int64) {
	if x, ok := b.nodes[player]; ok {
		if points != 0 {
			b.list.setScore(x, x.score+points)
		}
		return
	}
	// Clone so the board never pins a larger buffer the id may share.
	x := b.enter(hunt.PlayerID(strings.Clone(string(player))))
	x.score = points
	b.list.insert(x)
}

// enter adds a node for player (not on the board yet) to the player map,
// without linking it: the caller sets its score and inserts it before any
// read. player must be a private copy (the board keeps it).
func (b *board) enter(player hunt.PlayerID) *node {
	x := newNode(b.list.randomHeight())
	x.player, x.tie = player, tieKey(player)
	b.nodes[player] = x
	return x
}

// get returns player's rank and score.
func (b *board) get(player hunt.PlayerID) (rank int, score int64, ok bool) {
	x, ok := b.nodes[player]
	if !ok {
		return 0, 0, false
	}
	return b.list.rank(x), x.score, true
}

// appendRange appends up to count entries starting at 1-based rank from.
func (b *board) appendRange(dst []Entry, from, count int) []Entry {
	x := b.list.byRank(from)
	for r := from; x != nil && count > 0; r, count = r+1, count-1 {
		dst = append(dst, Entry{Rank: r, Player: x.player, Score: x.score})
		x = x.level[0].next
	}
	return dst
}

func (b *board) len() int { return b.list.length }
