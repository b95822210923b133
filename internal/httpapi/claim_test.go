package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
)

// TestClaimGranted checks every member of a 201 and the wallet and ledger it credits.
func TestClaimGranted(t *testing.T) {
	e := newEnv(t, envOption{})
	s := numSpot(0, 3)
	e.basicHunt(s)
	tok := e.token("alice")
	r := e.claim(tok, "h1", s.id, "key-1", s.lat, s.lon)
	mustStatus(t, "claim", r, http.StatusCreated)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("claim Content-Type = %q; want application/json", ct)
	}
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first claim has Idempotent-Replayed: %v", r.header)
	}
	m := decodeJSON(t, r)
	ep := m["epoch"].(map[string]any)
	token := fmt.Sprintf("%v.%v", ep["partition"], ep["seq"])
	want := map[string]any{
		"claim_id": token, "player": "alice", "hunt": "h1", "hotspot": s.id, "outcome": "granted",
		"reward": json.Number("10"), "points": json.Number("5"), "tickets_left": json.Number("2"),
		"consistency_token": token,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("claim member %s = %v; want %v (body %s)", k, m[k], v, r.body)
		}
	}
	if len(m) != len(want)+1 {
		t.Errorf("claim body has %d members; want %d: %s", len(m), len(want)+1, r.body)
	}
	if got := e.wallet(tok); got != 10 {
		t.Fatalf("wallet after grant = %d; want 10", got)
	}
	lr := e.do(req{method: "GET", path: "/v1/wallet/ledger?limit=5", auth: tok})
	mustStatus(t, "ledger", lr, http.StatusOK)
	entries := decodeJSON(t, lr)["entries"].([]any)
	if len(entries) != 1 || entries[0].(map[string]any)["amount"] != json.Number("10") {
		t.Fatalf("ledger = %s; want one entry of 10", lr.body)
	}
	// The wallet accepts a valid after= token (it is immediate on this engine).
	wr := e.do(req{method: "GET", path: "/v1/wallet?after=" + token, auth: tok})
	mustStatus(t, "wallet after=", wr, http.StatusOK)
}

// TestClaimOutcomes checks each refused outcome's status, code and members.
func TestClaimOutcomes(t *testing.T) {
	e := newEnv(t, envOption{})
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	one := numSpot(1, 1)
	closed := numSpot(2, 5)
	closed.opensAt = future
	e.basicHunt(numSpot(0, 5), one, closed)
	e.putHunt("fast", `{"name":"Speed","claim_radius_m":100,"max_speed_mps":5}`)
	a, b := numSpot(3, 5), numSpot(20, 5) // ~3 km apart
	e.importSpots("fast", a, b)

	alice, bob := e.token("alice"), e.token("bob")
	s0 := numSpot(0, 5)
	mustStatus(t, "first claim", e.claim(alice, "h1", s0.id, e.key(), s0.lat, s0.lon), http.StatusCreated)
	mustStatus(t, "grant of the single ticket", e.claim(alice, "h1", one.id, e.key(), one.lat, one.lon), http.StatusCreated)

	cases := []struct {
		name   string
		r      resp
		status int
		code   string
	}{
		{"already_claimed", e.claim(alice, "h1", s0.id, e.key(), s0.lat, s0.lon), 409, "already_claimed"},
		{"sold_out", e.claim(bob, "h1", one.id, e.key(), one.lat, one.lon), 409, "sold_out"},
		{"too_far", e.claim(bob, "h1", s0.id, e.key(), s0.lat+0.01, s0.lon), 422, "too_far"},
		{"not_open", e.claim(bob, "h1", closed.id, e.key(), closed.lat, closed.lon), 422, "not_open"},
		{"grant before the jump", e.claim(bob, "fast", a.id, e.key(), a.lat, a.lon), 201, ""},
		{"implausible_movement", e.claim(bob, "fast", b.id, e.key(), b.lat, b.lon), 422, "implausible_movement"},
		{"unknown hunt", e.claim(bob, "nope", s0.id, e.key(), s0.lat, s0.lon), 404, "unknown_hunt"},
		{"unknown hotspot", e.claim(bob, "h1", "nope", e.key(), s0.lat, s0.lon), 404, "unknown_hotspot"},
	}
	for _, c := range cases {
		if c.code == "" {
			mustStatus(t, c.name, c.r, c.status)
			continue
		}
		m := checkProblem(t, c.name, c.r, c.status, c.code)
		if c.status == 404 {
			continue
		}
		if m["outcome"] != c.code {
			t.Errorf("%s: outcome = %v; want %s", c.name, m["outcome"], c.code)
		}
		for _, k := range []string{"claim_id", "epoch", "consistency_token", "player", "hotspot", "tickets_left"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: member %s missing in %s", c.name, k, c.r.body)
			}
		}
	}
	if got := e.wallet(bob); got != a.reward {
		t.Fatalf("bob's wallet = %d; want %d (only the grant before the jump)", got, a.reward)
	}
}

// TestSpend covers spent, insufficient_funds and spend replays.
func TestSpend(t *testing.T) {
	e := newEnv(t, envOption{})
	s := numSpot(0, 5) // reward 10
	e.basicHunt(s)
	tok := e.token("carol")
	mustStatus(t, "claim", e.claim(tok, "h1", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	spend := func(key, body string) resp {
		return e.do(req{method: "POST", path: "/v1/wallet/spend", auth: tok, header: map[string]string{"Idempotency-Key": key}, body: body})
	}
	r := spend("sp-1", `{"amount":4,"reason":"coffee \u2615"}`)
	mustStatus(t, "spend", r, http.StatusCreated)
	m := decodeJSON(t, r)
	if m["outcome"] != "spent" || m["balance"] != json.Number("6") || m["amount"] != json.Number("4") || m["reason"] != "coffee \u2615" {
		t.Fatalf("spend = %s; want spent, balance 6, amount 4", r.body)
	}
	again := spend("sp-1", `{"amount":4,"reason":"coffee \u2615"}`)
	if again.status != r.status || string(again.body) != string(r.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("spend replay = %v %v; want %v with Idempotent-Replayed", again, again.header, r)
	}
	poor := spend("sp-2", `{"amount":7}`)
	pm := checkProblem(t, "overspend", poor, 409, "insufficient_funds")
	if pm["outcome"] != "insufficient_funds" || pm["balance"] != json.Number("6") {
		t.Fatalf("overspend = %s; want outcome insufficient_funds, balance 6", poor.body)
	}
	mustStatus(t, "exact spend", spend("sp-3", `{"amount":6}`), http.StatusCreated)
	if got := e.wallet(tok); got != 0 {
		t.Fatalf("wallet = %d; want 0", got)
	}
	// A spend key reused for a claim is refused: keys are shared per player.
	checkProblem(t, "spend key reused by a claim", e.claim(tok, "h1", s.id, "sp-1", s.lat, s.lon), 422, "idempotency_key_reused")
}

// TestShedding: a full inbox answers 429 overloaded, a request deadline
// that fires mid-claim answers 503 timeout (and a retry with the same key
// learns the outcome), and a failed commit answers 503 unavailable. The
// engine's partition writer is held in its FaultHook to make each moment
// deterministic.
func TestShedding(t *testing.T) {
	var armed, failing atomic.Bool
	entered, release := make(chan struct{}, 16), make(chan struct{})
	e := newEnv(t, envOption{
		engineFails: true,
		api:         func(c *Config) { c.RequestTimeout = time.Second },
		eng: func(c *embedded.Config) {
			c.InboxLenMax, c.BatchLenMax, c.PipelineDepth = 1, 1, 1
			c.FaultHook = func(point string) error {
				if point != embedded.FaultBeforeCommit {
					return nil
				}
				if failing.Load() {
					return errors.New("disk on fire")
				}
				if armed.Load() {
					entered <- struct{}{}
					<-release
				}
				return nil
			}
		},
	})
	// Let the writer go however the test ends: a failure while it is held
	// would otherwise leave the engine's shutdown (newEnv's cleanup, which
	// runs after this one) waiting for it until the test binary times out.
	var releaseOnce sync.Once
	releaseWriter := func() { armed.Store(false); releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseWriter)
	s := numSpot(0, 10)
	e.basicHunt(s)
	tokA, tokB, tokC := e.token("a"), e.token("b"), e.token("c")
	armed.Store(true)
	answers := make(chan resp, 2)
	go func() { answers <- e.claim(tokA, "h1", s.id, "ka", s.lat, s.lon) }()
	select {
	case <-entered: // the writer holds A's batch
	case <-time.After(20 * time.Second):
		t.Fatal("the partition writer did not reach the commit hook with A's batch within 20 s")
	}
	go func() { answers <- e.claim(tokB, "h1", s.id, "kb", s.lat, s.lon) }()
	waitFor(t, "B queued in the inbox", func() bool {
		for _, st := range e.eng.Status() {
			if st.Depth > 0 {
				return true
			}
		}
		return false
	})
	r := e.claim(tokC, "h1", s.id, "kc", s.lat, s.lon)
	checkProblem(t, "claim on a full inbox", r, http.StatusTooManyRequests, "overloaded")
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("429 Retry-After = %q; want 1", r.header.Get("Retry-After"))
	}
	// A (and B) outlive their 1 s deadline while the writer is held.
	for i := 0; i < 2; i++ {
		checkProblem(t, "claim past its deadline", <-answers, http.StatusServiceUnavailable, "timeout")
	}
	releaseWriter()
	for _, c := range []struct{ tok, key string }{{tokA, "ka"}, {tokB, "kb"}} {
		again := e.claim(c.tok, "h1", s.id, c.key, s.lat, s.lon)
		mustStatus(t, "retry after a timeout", again, http.StatusCreated)
		if again.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry after a timeout: not a replay; the first attempt was decided")
		}
	}
	mustStatus(t, "claim C after the jam", e.claim(tokC, "h1", s.id, "kc", s.lat, s.lon), http.StatusCreated)

	failing.Store(true)
	tokD := e.token("d")
	r = e.claim(tokD, "h1", s.id, "kd", s.lat, s.lon)
	checkProblem(t, "claim whose commit fails", r, http.StatusServiceUnavailable, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	checkProblem(t, "readyz after a failed commit", e.do(req{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, "not_ready")
	if got := e.wallet(tokD); got != 0 {
		t.Fatalf("wallet after a failed commit = %d; want 0", got)
	}
}
