package leaderboard

import "github.com/cairnhq/cairn/internal/hunt"

// A descent of a large board is a chain of dependent loads that mostly miss
// the cache: each node's key must arrive before the next node is known. Two
// descents of different keys (or of different boards) do not depend on each
// other, so running several a step at a time in turn keeps several misses in
// flight instead of one. seek is such a descent; seekAll runs a set of them.
// They only read the lists: the caller changes the lists after they finished,
// and only in ways that keep the other seeks' results valid (one list per
// seek, or moveUp's two seeks of one list).

// seek walks toward a key (score, tie, player) in one skiplist and ends with
// what insert computes: the last node before the key on every level and
// that node's rank.
type seek struct {
	score  int64
	tie    uint64
	player hunt.PlayerID
	cur    *node
	lv     int                 // the level being walked; -1 once done
	update [skipLevelMax]*node // levels [0, l.level) are set when done
	rank   [skipLevelMax]int   // update[i]'s 1-based rank, 0 for the head
}

func (s *seek) init(l *skiplist, score int64, tie uint64, player hunt.PlayerID) {
	s.score, s.tie, s.player = score, tie, player
	s.cur = &l.head
	s.lv = l.level - 1
	s.rank[s.lv] = 0
}

// seekAll runs every seek to its end, one step of each in turn: a step
// advances one node along the seek's current level, or goes down a level at
// its end. Finished seeks leave the rotation.
func seekAll(ss []seek) {
	var live [2 * flushGroupMax]*seek
	if len(ss) > len(live) {
		seekAll(ss[len(live):])
		ss = ss[:len(live)]
	}
	n := len(ss)
	for i := range ss {
		live[i] = &ss[i]
	}
	for n > 0 {
		for i := 0; i < n; {
			s := live[i]
			lk := &s.cur.level[s.lv]
			if nx := lk.next; nx != nil && before(nx.score, nx.tie, nx.player, s.score, s.tie, s.player) {
				s.rank[s.lv] += lk.span
				s.cur = nx
				i++
				continue
			}
			s.update[s.lv] = s.cur
			if s.lv--; s.lv >= 0 {
				s.rank[s.lv] = s.rank[s.lv+1]
				i++
				continue
			}
			n--
			live[i] = live[n] // done: swap in the last live seek
		}
	}
}
