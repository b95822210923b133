package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/leaderboard"
)

type boardAnswer struct {
	Entries []struct {
		Rank   int    `json:"rank"`
		Player string `json:"player"`
		Score  int64  `json:"score"`
	} `json:"entries"`
	Ranked           *bool  `json:"ranked"`
	LastUpdatedEpoch int64  `json:"last_updated_epoch"`
	StalenessMs      *int64 `json:"staleness_ms"`
}

func (e *testEnv) readBoard(path, tok string) boardAnswer {
	e.t.Helper()
	r := e.do(req{method: "GET", path: path, auth: tok})
	mustStatus(e.t, "GET "+path, r, http.StatusOK)
	var b boardAnswer
	if err := json.Unmarshal(r.body, &b); err != nil || b.StalenessMs == nil {
		e.t.Fatalf("GET %s = %v: %v; want entries, last_updated_epoch and staleness_ms", path, r, err)
	}
	return b
}

// TestReadYourWrites: for many claims over many partitions, a leaderboard
// read with after=<the claim's token> always shows that claim's points.
// The claims run concurrently, so the projection is usually behind when the
// read arrives; only the wait makes the read correct.
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t, envOption{})
	const spots, players = 30, 40
	all := make([]spot, spots)
	for i := range all {
		all[i] = numSpot(i, players)
	}
	e.basicHunt(all...)
	var wg sync.WaitGroup
	for p := 0; p < players; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "rw" + strconv.Itoa(p)
			tok := e.token(name)
			var want int64
			for i := 0; i < 5; i++ {
				s := all[(p*7+i*11)%spots]
				r := e.claim(tok, "h1", s.id, e.key(), s.lat, s.lon)
				if r.status != http.StatusCreated {
					t.Errorf("claim = %v; want 201", r)
					return
				}
				want += s.points
				var g struct {
					Token string `json:"consistency_token"`
				}
				_ = json.Unmarshal(r.body, &g)
				b := e.readBoard("/v1/hunts/h1/leaderboard?around=me&limit=1&after="+g.Token, tok)
				if len(b.Entries) != 1 || b.Entries[0].Player != name || b.Entries[0].Score != want || b.Ranked == nil || !*b.Ranked {
					t.Errorf("leaderboard after %s = %+v; want %s with %d points", g.Token, b, name, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestLeaderboardViews covers top, offset, regions, around=me and
// last_updated_epoch.
func TestLeaderboardViews(t *testing.T) {
	e := newEnv(t, envOption{})
	far := spot{id: "tokyo", lat: 35.6762, lon: 139.6503, tickets: 10, reward: 1, points: 100}
	near := numSpot(0, 10) // points 5
	e.basicHunt(near, far)
	var tokens []string
	for i, c := range []struct {
		player string
		s      spot
	}{{"ann", near}, {"ben", far}, {"cid", near}, {"ann", far}} {
		r := e.claim(e.token(c.player), "h1", c.s.id, "k"+strconv.Itoa(i), c.s.lat, c.s.lon)
		mustStatus(t, "claim", r, http.StatusCreated)
		var g struct {
			Token string `json:"consistency_token"`
		}
		_ = json.Unmarshal(r.body, &g)
		tokens = append(tokens, g.Token)
	}
	// The claims went to two partitions; waiting for each token makes the
	// board complete.
	var b boardAnswer
	for _, tok := range tokens {
		b = e.readBoard("/v1/hunts/h1/leaderboard?after="+tok, "")
	}
	if got := entriesOf(b); fmt.Sprint(got) != "[ann:105 ben:100 cid:5]" {
		t.Errorf("leaderboard = %v; want [ann:105 ben:100 cid:5]", got)
	}
	if b.LastUpdatedEpoch <= 0 || b.LastUpdatedEpoch > time.Now().UnixMilli() {
		t.Errorf("last_updated_epoch = %d; want a unix ms time of the past", b.LastUpdatedEpoch)
	}
	if got := entriesOf(e.readBoard("/v1/hunts/h1/leaderboard?offset=1&limit=1", "")); fmt.Sprint(got) != "[ben:100]" {
		t.Errorf("offset=1 limit=1 = %v; want [ben:100]", got)
	}
	tokyo, paris := geo.Encode(far.lat, far.lon, 3), geo.Encode(near.lat, near.lon, 4)
	if got := entriesOf(e.readBoard("/v1/hunts/h1/leaderboard?region="+tokyo, "")); fmt.Sprint(got) != "[ann:100 ben:100]" {
		t.Errorf("region %s (Tokyo) = %v; want [ann:100 ben:100]", tokyo, got)
	}
	if got := entriesOf(e.readBoard("/v1/hunts/h1/leaderboard?region="+paris, "")); fmt.Sprint(got) != "[ann:5 cid:5]" {
		t.Errorf("region %s (Paris) = %v; want [ann:5 cid:5]", paris, got)
	}
	around := e.readBoard("/v1/hunts/h1/leaderboard?around=me&limit=1", e.token("ben"))
	if got := entriesOf(around); fmt.Sprint(got) != "[ben:100]" || around.Entries[0].Rank != 2 {
		t.Errorf("around=me for ben = %+v; want ben at rank 2", around)
	}
	nobody := e.readBoard("/v1/hunts/h1/leaderboard?around=me", e.token("zed"))
	if len(nobody.Entries) != 0 || nobody.Ranked == nil || *nobody.Ranked {
		t.Errorf("around=me for an unranked player = %+v; want no entries, ranked false", nobody)
	}
}

func entriesOf(b boardAnswer) []string {
	out := []string{}
	for _, en := range b.Entries {
		out = append(out, en.Player+":"+strconv.FormatInt(en.Score, 10))
	}
	return out
}

// stuckBoard never catches up, and panics on Top when asked to.
type stuckBoard struct {
	leaderboard.Page
	panics atomic.Bool
}

func (b *stuckBoard) Top(hunt.HuntID, string, int, int) leaderboard.Page {
	if b.panics.Load() {
		panic("board exploded")
	}
	return b.Page
}
func (b *stuckBoard) Around(hunt.HuntID, string, hunt.PlayerID, int) (leaderboard.Page, bool) {
	return b.Page, false
}
func (b *stuckBoard) Wait(ctx context.Context, _ hunt.Epoch) error {
	<-ctx.Done()
	return ctx.Err()
}
func (b *stuckBoard) Status() []engine.Status { return nil }

// TestAfterTimesOut: a read whose token the projection never reaches is a
// 503 not_caught_up with Retry-After, never a stale 200; and a handler
// panic is a 500 problem, with the server still serving.
func TestAfterTimesOut(t *testing.T) {
	sb := &stuckBoard{}
	e := newEnv(t, envOption{api: func(c *Config) { c.Board = sb; c.AfterWaitMax = 50 * time.Millisecond }})
	e.putHunt("h1", `{"name":"x"}`)
	r := e.do(req{method: "GET", path: "/v1/hunts/h1/leaderboard?after=0.1"})
	checkProblem(t, "stuck after=", r, http.StatusServiceUnavailable, "not_caught_up")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", r.header)
	}
	sb.panics.Store(true)
	checkProblem(t, "panicking board", e.do(req{method: "GET", path: "/v1/hunts/h1/leaderboard"}), http.StatusInternalServerError, "internal")
	mustStatus(t, "healthz after a panic", e.do(req{method: "GET", path: "/healthz"}), http.StatusOK)
}
