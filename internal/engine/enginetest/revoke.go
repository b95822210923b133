package enginetest

import (
	"errors"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// testRevocations: token revocations are recorded per player, keep the
// latest time (an earlier one changes nothing), refuse a bad player id
// (recording nothing), and survive a restart.
func testRevocations(t *testing.T, h Harness) {
	e := Start(t, h)
	c, cancel := ctx()
	defer cancel()
	t0 := time.UnixMilli(time.Now().UnixMilli()).UTC()
	steps := []struct {
		player hunt.PlayerID
		before time.Time
	}{
		{"alice", t0},
		{"bob", t0.Add(-time.Hour)},
		{"alice", t0.Add(-time.Minute)}, // earlier: alice keeps t0
		{"bob", t0.Add(time.Second)},    // later: bob moves on
	}
	for _, s := range steps {
		if err := e.RevokeTokens(c, s.player, s.before); err != nil {
			t.Fatalf("RevokeTokens(%s, %v) = %v", s.player, s.before, err)
		}
	}
	if err := e.RevokeTokens(c, "not a player id", t0); !errors.Is(err, hunt.ErrInvalid) {
		t.Errorf("RevokeTokens(bad id) = %v; want hunt.ErrInvalid", err)
	}
	want := map[hunt.PlayerID]time.Time{"alice": t0, "bob": t0.Add(time.Second)}
	check := func(when string, e engine.Engine) {
		t.Helper()
		got := map[hunt.PlayerID]time.Time{}
		if err := e.Revocations(c, func(p hunt.PlayerID, before time.Time) error {
			if _, dup := got[p]; dup {
				t.Errorf("%s: Revocations lists %s twice", when, p)
			}
			got[p] = before
			return nil
		}); err != nil {
			t.Fatalf("%s: Revocations() = %v", when, err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: Revocations() = %v; want %v", when, got, want)
		}
		for p, w := range want {
			if !got[p].Equal(w) {
				t.Errorf("%s: Revocations()[%s] = %v; want %v", when, p, got[p], w)
			}
		}
	}
	check("live", e)
	if err := e.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	e = Start(t, h)
	check("after a restart", e)
}
