package leaderboard

import (
	"strings"

	"github.com/cairnhq/cairn/internal/hunt"
)

// A board is a counted B+tree: entries sit in leaves, sorted by the board
// order (before), as flat arrays of scores, tie keys and entry pointers; the
// inner nodes keep, per child, a separator key and the number of entries
// under that child, so summing the counts to the left of a descent's path
// gives a rank, and walking down by counts finds the entry of a rank. Leaves
// are linked both ways, so a page is one descent and then a walk along them.
//
// Why not the skiplist this replaced: on a board of 20k+ players each
// skiplist step is a dependent load that misses the cache (a score raise
// was two descents of ~30 nodes). A descent of this tree visits a node per
// level, 3 or 4 levels for up to a million players, and binary-searches a
// few contiguous cache lines in each: most of the cost of a move is the two
// leaves it touches.
//
// A score change is a delete of the entry's old key and an insert of its new
// one (in place when it stays inside the same leaf). Leaves split in halves
// when full; a leaf that falls under a quarter full after a delete merges
// with a neighbour under the same parent when together they fill at most
// three quarters of one; a node left with no entries or children is
// removed, and a root with one child gives way to it. Inner nodes do not
// merge otherwise (they are ~1/20 of the nodes). Entries never leave a
// board: every delete is followed by the insert of the same entry.

const (
	treeFanout   = 32 // entries per leaf, children per inner node
	treeDepthMax = 24 // inner levels: a new level needs a root of treeFanout children, so 24 takes over 16^22 leaf splits
)

// entry is one (player, score) of a board.
type entry struct {
	player hunt.PlayerID
	tie    uint64 // tieKey(player)
	score  int64
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

type leaf struct {
	n          int
	prev, next *leaf
	score      [treeFanout]int64
	tie        [treeFanout]uint64
	ent        [treeFanout]*entry
}

// inner is a node above the leaves. Its children are leaves when it is on
// the lowest inner level, else inner nodes. Separator i (i >= 1) is <= every
// key under child i and > every key under child i-1 (separator 0 is unused).
type inner struct {
	n      int // children
	count  [treeFanout]int
	score  [treeFanout]int64
	tie    [treeFanout]uint64
	player [treeFanout]hunt.PlayerID
	kids   [treeFanout]*inner
	leaves [treeFanout]*leaf
}

// tree is not safe for concurrent use; the Projection's lock guards it.
type tree struct {
	root   *inner
	height int // inner levels, >= 1; the root is on level height-1, leaves' parents on 0
	first  *leaf
	length int
}

func (t *tree) init() {
	lf := new(leaf)
	t.root = &inner{n: 1}
	t.root.leaves[0] = lf
	t.height = 1
	t.first = lf
}

// lessAt reports whether the entry at i ranks ahead of the key.
func (lf *leaf) lessAt(i int, score int64, tie uint64, player hunt.PlayerID) bool {
	if s := lf.score[i]; s != score {
		return s > score
	}
	if t := lf.tie[i]; t != tie {
		return t < tie
	}
	return lf.ent[i].player < player
}

// search returns the first position whose entry does not rank ahead of the key.
func (lf *leaf) search(score int64, tie uint64, player hunt.PlayerID) int {
	lo, hi := 0, lf.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if lf.lessAt(m, score, tie, player) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// child returns the child whose range holds the key: the last one whose
// separator is not after it.
func (nd *inner) child(score int64, tie uint64, player hunt.PlayerID) int {
	lo, hi := 1, nd.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if before(score, tie, player, nd.score[m], nd.tie[m], nd.player[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo - 1
}

// treePath is a descent: the inner node and the child taken on every level.
type treePath struct {
	nd [treeDepthMax]*inner
	i  [treeDepthMax]int
}

// descend walks to the leaf whose range holds the key, adding delta to the
// counts along the way.
func (t *tree) descend(score int64, tie uint64, player hunt.PlayerID, delta int, p *treePath) *leaf {
	nd := t.root
	for lv := t.height - 1; ; lv-- {
		i := nd.child(score, tie, player)
		nd.count[i] += delta
		p.nd[lv], p.i[lv] = nd, i
		if lv == 0 {
			return nd.leaves[i]
		}
		nd = nd.kids[i]
	}
}

// insert links x (player, tie and score set) at its place.
func (t *tree) insert(x *entry) {
	var p treePath
	lf := t.descend(x.score, x.tie, x.player, 1, &p)
	pos := lf.search(x.score, x.tie, x.player)
	t.length++
	if lf.n < treeFanout {
		lf.put(pos, x)
		return
	}
	rt := lf.split()
	if pos <= lf.n {
		lf.put(pos, x)
	} else {
		rt.put(pos-lf.n, x)
	}
	parent, i := p.nd[0], p.i[0]
	parent.count[i] = lf.n
	t.addChild(&p, 0, nil, rt, rt.n, rt.score[0], rt.tie[0], rt.ent[0].player)
}

func (lf *leaf) put(pos int, x *entry) {
	n := lf.n
	copy(lf.score[pos+1:n+1], lf.score[pos:n])
	copy(lf.tie[pos+1:n+1], lf.tie[pos:n])
	copy(lf.ent[pos+1:n+1], lf.ent[pos:n])
	lf.score[pos], lf.tie[pos], lf.ent[pos] = x.score, x.tie, x
	lf.n++
}

func (lf *leaf) cut(pos int) {
	n := lf.n
	copy(lf.score[pos:n-1], lf.score[pos+1:n])
	copy(lf.tie[pos:n-1], lf.tie[pos+1:n])
	copy(lf.ent[pos:n-1], lf.ent[pos+1:n])
	lf.ent[n-1] = nil
	lf.n--
}

// split moves the upper half of a full leaf to a new leaf after it.
func (lf *leaf) split() *leaf {
	const h = treeFanout / 2
	rt := &leaf{n: treeFanout - h, prev: lf, next: lf.next}
	copy(rt.score[:], lf.score[h:])
	copy(rt.tie[:], lf.tie[h:])
	copy(rt.ent[:], lf.ent[h:])
	clear(lf.ent[h:])
	lf.n = h
	if lf.next != nil {
		lf.next.prev = rt
	}
	lf.next = rt
	return rt
}

// addChild inserts a new child (kid or lf) with count entries and the given
// separator right after the child taken on level lv of p, whose count the
// caller has already reduced by count. A full node splits, and its new half
// goes up the same way; a root that splits gets a new root.
func (t *tree) addChild(p *treePath, lv int, kid *inner, lf *leaf, count int, score int64, tie uint64, player hunt.PlayerID) {
	for {
		if lv == t.height {
			old := t.root
			t.root = &inner{n: 2}
			t.root.kids[0], t.root.kids[1] = old, kid
			t.root.count[0], t.root.count[1] = old.total(), count
			t.root.score[1], t.root.tie[1], t.root.player[1] = score, tie, player
			t.height++
			return
		}
		nd, i := p.nd[lv], p.i[lv]+1
		if nd.n < treeFanout {
			nd.put(i, kid, lf, count, score, tie, player)
			return
		}
		rt := nd.split()
		if i <= nd.n {
			nd.put(i, kid, lf, count, score, tie, player)
		} else {
			rt.put(i-nd.n, kid, lf, count, score, tie, player)
		}
		if lv+1 < t.height {
			p.nd[lv+1].count[p.i[lv+1]] = nd.total()
		}
		kid, lf, count = rt, nil, rt.total()
		score, tie, player = rt.score[0], rt.tie[0], rt.player[0]
		lv++
	}
}

func (nd *inner) total() int {
	s := 0
	for i := range nd.n {
		s += nd.count[i]
	}
	return s
}

func (nd *inner) put(i int, kid *inner, lf *leaf, count int, score int64, tie uint64, player hunt.PlayerID) {
	n := nd.n
	copy(nd.count[i+1:n+1], nd.count[i:n])
	copy(nd.score[i+1:n+1], nd.score[i:n])
	copy(nd.tie[i+1:n+1], nd.tie[i:n])
	copy(nd.player[i+1:n+1], nd.player[i:n])
	copy(nd.kids[i+1:n+1], nd.kids[i:n])
	copy(nd.leaves[i+1:n+1], nd.leaves[i:n])
	nd.count[i], nd.score[i], nd.tie[i], nd.player[i], nd.kids[i], nd.leaves[i] = count, score, tie, player, kid, lf
	nd.n++
}

func (nd *inner) cut(i int) {
	n := nd.n
	copy(nd.count[i:n-1], nd.count[i+1:n])
	copy(nd.score[i:n-1], nd.score[i+1:n])
	copy(nd.tie[i:n-1], nd.tie[i+1:n])
	copy(nd.player[i:n-1], nd.player[i+1:n])
	copy(nd.kids[i:n-1], nd.kids[i+1:n])
	copy(nd.leaves[i:n-1], nd.leaves[i+1:n])
	nd.player[n-1], nd.kids[n-1], nd.leaves[n-1] = "", nil, nil
	nd.n--
}

// split moves the upper half of a full inner node to a new node. The new
// node's separator 0 keeps the key that separates it from this one.
func (nd *inner) split() *inner {
	const h = treeFanout / 2
	rt := &inner{n: treeFanout - h}
	copy(rt.count[:], nd.count[h:])
	copy(rt.score[:], nd.score[h:])
	copy(rt.tie[:], nd.tie[h:])
	copy(rt.player[:], nd.player[h:])
	copy(rt.kids[:], nd.kids[h:])
	copy(rt.leaves[:], nd.leaves[h:])
	clear(nd.player[h:])
	clear(nd.kids[h:])
	clear(nd.leaves[h:])
	nd.n = h
	return rt
}

// rebalance handles a leaf a delete left under a quarter full (the counts
// on p already reduced).
func (t *tree) rebalance(p *treePath, lf *leaf) {
	if lf.n >= treeFanout/4 {
		return
	}
	parent, i := p.nd[0], p.i[0]
	if lf.n == 0 && t.length == 0 {
		return // the tree's last leaf stays
	}
	// Merge with a neighbour under the same parent: the right one into lf,
	// or lf into the left one.
	var l, r *leaf
	ri := 0
	switch {
	case i+1 < parent.n && lf.n+parent.leaves[i+1].n <= treeFanout*3/4:
		l, r, ri = lf, parent.leaves[i+1], i+1
	case i > 0 && parent.leaves[i-1].n+lf.n <= treeFanout*3/4:
		l, r, ri = parent.leaves[i-1], lf, i
	case lf.n == 0:
		l, r, ri = nil, lf, i
	default:
		return
	}
	if l != nil {
		n := l.n
		copy(l.score[n:], r.score[:r.n])
		copy(l.tie[n:], r.tie[:r.n])
		copy(l.ent[n:], r.ent[:r.n])
		l.n += r.n
		parent.count[ri-1] += parent.count[ri]
	}
	// Unlink r from the leaf list.
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		t.first = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	}
	t.removeChild(p, 0, ri)
}

// removeChild drops child i of the node on level lv of p (its entries
// already moved or gone), then removes nodes left empty above it and lowers
// a root left with a single inner child.
func (t *tree) removeChild(p *treePath, lv, i int) {
	for {
		nd := p.nd[lv]
		nd.cut(i)
		if nd.n > 0 || lv == t.height-1 {
			break
		}
		lv++
		i = p.i[lv]
	}
	for t.height > 1 && t.root.n == 1 {
		t.root = t.root.kids[0]
		t.height--
	}
}

// rank returns x's 1-based position.
func (t *tree) rank(x *entry) int {
	r := 0
	nd := t.root
	for lv := t.height - 1; ; lv-- {
		i := nd.child(x.score, x.tie, x.player)
		for j := range i {
			r += nd.count[j]
		}
		if lv == 0 {
			lf := nd.leaves[i]
			pos := lf.search(x.score, x.tie, x.player)
			if pos >= lf.n || lf.ent[pos] != x {
				panic("leaderboard: tree invariant: entry not reachable by its key")
			}
			return r + pos + 1
		}
		nd = nd.kids[i]
	}
}

// byRank returns the leaf and position of 1-based rank r; nil when r is out
// of range.
func (t *tree) byRank(r int) (*leaf, int) {
	if r < 1 || r > t.length {
		return nil, 0
	}
	r-- // 0-based within the subtree
	nd := t.root
	for lv := t.height - 1; ; lv-- {
		i := 0
		for i < nd.n-1 && r >= nd.count[i] {
			r -= nd.count[i]
			i++
		}
		if lv == 0 {
			return nd.leaves[i], r
		}
		nd = nd.kids[i]
	}
}

// setScore changes x's score: in place when it keeps its place in its leaf,
// else a delete at the old key and an insert at the new one.
func (t *tree) setScore(x *entry, score int64) {
	if score == x.score {
		return
	}
	var p treePath
	lf := t.descend(x.score, x.tie, x.player, 0, &p)
	pos := lf.search(x.score, x.tie, x.player)
	if pos >= lf.n || lf.ent[pos] != x {
		panic("leaderboard: tree invariant: entry not found at its own key")
	}
	// In place when the neighbours inside the leaf still bracket the new
	// key (and it stays within the leaf's range: not at either end).
	if pos > 0 && pos < lf.n-1 &&
		lf.lessAt(pos-1, score, x.tie, x.player) && !lf.lessAt(pos+1, score, x.tie, x.player) {
		x.score = score
		lf.score[pos] = score
		return
	}
	for lv := range t.height {
		p.nd[lv].count[p.i[lv]]--
	}
	lf.cut(pos)
	t.length--
	t.rebalance(&p, lf)
	x.score = score
	t.insert(x)
}

// board is one ranking: a hunt's global board or one region's.
type board struct {
	tree     tree
	byPlayer map[hunt.PlayerID]*entry // each ranked player's entry
}

func newBoard() *board {
	b := &board{byPlayer: make(map[hunt.PlayerID]*entry)}
	b.tree.init()
	return b
}

// add credits points to player, entering them on the board if new (even with
// zero points: a player with a grant is ranked).
func (b *board) add(player hunt.PlayerID, points int64) {
	if x, ok := b.byPlayer[player]; ok {
		if points != 0 {
			b.tree.setScore(x, x.score+points)
		}
		return
	}
	// Clone so the board never pins a larger buffer the id may share.
	x := new(entry)
	b.enter(x, hunt.PlayerID(strings.Clone(string(player))))
	x.score = points
	b.tree.insert(x)
}

// enter adds x for player (not on the board yet) to the player map, without
// linking it: the caller sets its score and inserts it before any read.
// player must be a private copy (the board keeps it).
func (b *board) enter(x *entry, player hunt.PlayerID) {
	x.player, x.tie = player, tieKey(player)
	b.byPlayer[player] = x
}

// get returns player's rank and score.
func (b *board) get(player hunt.PlayerID) (rank int, score int64, ok bool) {
	x, ok := b.byPlayer[player]
	if !ok {
		return 0, 0, false
	}
	return b.tree.rank(x), x.score, true
}

// appendRange appends up to count entries starting at 1-based rank from.
func (b *board) appendRange(dst []Entry, from, count int) []Entry {
	lf, i := b.tree.byRank(from)
	for r := from; lf != nil && count > 0; r, count = r+1, count-1 {
		x := lf.ent[i]
		dst = append(dst, Entry{Rank: r, Player: x.player, Score: x.score})
		if i++; i == lf.n {
			lf, i = lf.next, 0
		}
	}
	return dst
}

func (b *board) len() int { return b.tree.length }
