package leaderboard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/hunt"
)

// checkSkiplist verifies every structural invariant of l: level-0 order,
// back pointers, tail, length, and that every span equals the real distance.
func checkSkiplist(t interface{ Fatalf(string, ...any) }, l *skiplist) {
	pos := map[*node]int{&l.head: 0}
	var prev *node
	i := 0
	for x := l.head.level[0].next; x != nil; x = x.level[0].next {
		i++
		pos[x] = i
		if x.back != prev {
			t.Fatalf("node %s at rank %d: back = %v; want %v", x.player, i, x.back, prev)
		}
		if prev != nil && !before(prev.score, prev.tie, prev.player, x.score, x.tie, x.player) {
			t.Fatalf("rank %d (%s, %d) not before rank %d (%s, %d)", i-1, prev.player, prev.score, i, x.player, x.score)
		}
		if len(x.level) > l.level {
			t.Fatalf("node %s height %d > list level %d", x.player, len(x.level), l.level)
		}
		prev = x
	}
	if i != l.length {
		t.Fatalf("length = %d; level 0 holds %d", l.length, i)
	}
	if l.tail != prev {
		t.Fatalf("tail = %v; want %v", l.tail, prev)
	}
	for lv := 0; lv < l.level; lv++ {
		cur := &l.head
		for {
			lk := cur.level[lv]
			want := l.length - pos[cur]
			if lk.next != nil {
				want = pos[lk.next] - pos[cur]
			}
			if lk.span != want {
				t.Fatalf("level %d link from rank %d: span %d; want %d", lv, pos[cur], lk.span, want)
			}
			if lk.next == nil {
				break
			}
			cur = lk.next
		}
	}
}

// sortedModel is the obvious implementation: a slice sorted by the board order.
func sortedModel(scores map[hunt.PlayerID]int64) []Entry {
	out := make([]Entry, 0, len(scores))
	for p, s := range scores {
		out = append(out, Entry{Player: p, Score: s})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case before(a.Score, tieKey(a.Player), a.Player, b.Score, tieKey(b.Player), b.Player):
			return -1
		case before(b.Score, tieKey(b.Player), b.Player, a.Score, tieKey(a.Player), a.Player):
			return 1
		}
		return 0
	})
	for i := range out {
		out[i].Rank = i + 1
	}
	return out
}

func TestSkiplistMatchesSortedModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := newBoard(rapid.Uint64().Draw(t, "seed"))
		scores := map[hunt.PlayerID]int64{}
		nPlayers := rapid.IntRange(1, 60).Draw(t, "players")
		player := rapid.Custom(func(t *rapid.T) hunt.PlayerID {
			return hunt.PlayerID(fmt.Sprintf("p%03d", rapid.IntRange(0, nPlayers-1).Draw(t, "i")))
		})
		t.Repeat(map[string]func(*rapid.T){
			"add": func(t *rapid.T) {
				p := player.Draw(t, "player")
				// Small deltas of both signs: many ties and moves both ways.
				d := rapid.Int64Range(-4, 6).Draw(t, "points")
				b.add(p, d)
				scores[p] += d
			},
			"get": func(t *rapid.T) {
				p := player.Draw(t, "player")
				model := sortedModel(scores)
				r, s, ok := b.get(p)
				i := slices.IndexFunc(model, func(e Entry) bool { return e.Player == p })
				if ok != (i >= 0) {
					t.Fatalf("get(%s) ok = %v; want %v", p, ok, i >= 0)
				}
				if ok && (r != model[i].Rank || s != model[i].Score) {
					t.Fatalf("get(%s) = (%d, %d); want (%d, %d)", p, r, s, model[i].Rank, model[i].Score)
				}
			},
			"range": func(t *rapid.T) {
				model := sortedModel(scores)
				from := rapid.IntRange(0, len(model)+2).Draw(t, "from")
				count := rapid.IntRange(0, 10).Draw(t, "count")
				got := b.appendRange(nil, from, count)
				var want []Entry
				if from >= 1 && from <= len(model) {
					want = model[from-1 : min(len(model), from-1+count)]
				}
				if !slices.Equal(got, want) {
					t.Fatalf("appendRange(%d, %d) = %v; want %v", from, count, got, want)
				}
			},
			"": func(t *rapid.T) {
				checkSkiplist(t, &b.list)
				if b.len() != len(scores) {
					t.Fatalf("len() = %d; want %d", b.len(), len(scores))
				}
			},
		})
		if got, want := b.appendRange(nil, 1, b.len()), sortedModel(scores); !slices.Equal(got, want) {
			t.Fatalf("whole board = %v; want %v", got, want)
		}
	})
}

// TestSkiplistLargeRandom complements the rapid test (whose boards stay
// small) with a board tall enough to use many levels.
func TestSkiplistLargeRandom(t *testing.T) {
	b := newBoard(99)
	scores := map[hunt.PlayerID]int64{}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 30_000 {
		p := hunt.PlayerID(fmt.Sprintf("p%05d", r.IntN(5000)))
		d := r.Int64N(20) - 5
		b.add(p, d)
		scores[p] += d
		if i%10_000 == 9_999 {
			checkSkiplist(t, &b.list)
		}
	}
	if b.list.level < 4 {
		t.Fatalf("list level = %d after %d players; want >= 4 (height distribution broken?)", b.list.level, b.len())
	}
	want := sortedModel(scores)
	if got := b.appendRange(nil, 1, b.len()); !slices.Equal(got, want) {
		t.Fatalf("whole board differs from the sorted model (%d vs %d entries)", len(got), len(want))
	}
	for _, e := range want[:200] {
		if r, s, ok := b.get(e.Player); !ok || r != e.Rank || s != e.Score {
			t.Fatalf("get(%s) = (%d, %d, %v); want (%d, %d, true)", e.Player, r, s, ok, e.Rank, e.Score)
		}
	}
}

func TestSkiplistTiesOrderByPlayerID(t *testing.T) {
	b := newBoard(1)
	for _, p := range []hunt.PlayerID{"carol", "alice", "dave", "bob"} {
		b.add(p, 10)
	}
	b.add("erin", 11)
	b.add("aaron", 9)
	want := []Entry{{1, "erin", 11}, {2, "alice", 10}, {3, "bob", 10}, {4, "carol", 10}, {5, "dave", 10}, {6, "aaron", 9}}
	if got := b.appendRange(nil, 1, 10); !slices.Equal(got, want) {
		t.Fatalf("appendRange(1, 10) = %v; want %v", got, want)
	}
	checkSkiplist(t, &b.list)
}

func TestSkiplistUpdateDoesNotAllocate(t *testing.T) {
	b := newBoard(7)
	for i := range 1000 {
		b.add(hunt.PlayerID(fmt.Sprintf("p%04d", i)), int64(i%50))
	}
	players := make([]hunt.PlayerID, 1000)
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("p%04d", i))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		b.add(players[i%len(players)], 3)
		i += 7
	})
	if allocs != 0 {
		t.Fatalf("add of a ranked player: %v allocs; want 0", allocs)
	}
	checkSkiplist(t, &b.list)
}

const benchPlayers = 100_000

func benchBoard(b *testing.B) (*board, []hunt.PlayerID) {
	b.Helper()
	bd := newBoard(42)
	players := make([]hunt.PlayerID, benchPlayers)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("player-%06d", i))
		bd.add(players[i], r.Int64N(10_000))
	}
	return bd, players
}

// BenchmarkUpdate: a grant's score change on a 100k-player board (remove + insert of the same node).
func BenchmarkUpdate(b *testing.B) {
	bd, players := benchBoard(b)
	r := rand.New(rand.NewPCG(3, 4))
	idx := make([]int, 4096)
	for i := range idx {
		idx[i] = r.IntN(len(players))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		bd.add(players[idx[i%len(idx)]], 1+int64(i%100))
	}
}

// BenchmarkRank: a player's rank and score on a 100k-player board.
func BenchmarkRank(b *testing.B) {
	bd, players := benchBoard(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := bd.get(players[(i*7919)%len(players)]); !ok {
			b.Fatal("player not ranked")
		}
	}
}

// BenchmarkInsert: a new player entering a board.
func BenchmarkInsert(b *testing.B) {
	bd := newBoard(42)
	players := make([]hunt.PlayerID, 1<<18)
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("player-%07d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if n == len(players) {
			b.StopTimer()
			bd, n = newBoard(42), 0
			b.StartTimer()
		}
		bd.add(players[n], int64(n%1000))
		n++
	}
}

// BenchmarkAround: a 21-entry window around a player on a 100k-player board.
func BenchmarkAround(b *testing.B) {
	bd, players := benchBoard(b)
	buf := make([]Entry, 0, 21)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r, _, _ := bd.get(players[(i*7919)%len(players)])
		buf = bd.appendRange(buf[:0], max(1, r-10), 21)
	}
}

// TestTieKeyOrder: comparing tie keys first never contradicts comparing ids.
func TestTieKeyOrder(t *testing.T) {
	ids := []hunt.PlayerID{"a", "ab", "abc", "abcdefgh", "abcdefghi", "abcdefgz", "b", "p000123", "p000124", "Z", "0", "a-b", "a.b", "a:b", "a_b"}
	for _, a := range ids {
		for _, b := range ids {
			got := before(0, tieKey(a), a, 0, tieKey(b), b)
			if want := a < b; got != want {
				t.Errorf("before(tie %q, %q) = %v; want %v", a, b, got, want)
			}
		}
	}
}
