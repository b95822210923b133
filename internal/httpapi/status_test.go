package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
)

// unready wraps an engine and reports it not ready while down is set.
type unready struct {
	engine.Engine
	down atomic.Bool
}

func (u *unready) Ready() error {
	if u.down.Load() {
		return errors.New("store is on fire")
	}
	return u.Engine.Ready()
}

// TestStatusRoutes covers /v1/consistency, /healthz, /readyz and /metrics.
func TestStatusRoutes(t *testing.T) {
	var u *unready
	e := newEnv(t, envOption{api: func(c *Config) { u = &unready{Engine: c.Engine}; c.Engine = u }})
	s := numSpot(0, 1)
	e.basicHunt(s)
	r := e.claim(e.token("a"), "h1", s.id, e.key(), s.lat, s.lon)
	mustStatus(t, "claim", r, http.StatusCreated)
	var g struct {
		Epoch struct{ Partition, Seq uint64 } `json:"epoch"`
		Token string                          `json:"consistency_token"`
	}
	_ = json.Unmarshal(r.body, &g)
	e.readBoard("/v1/hunts/h1/leaderboard?after="+g.Token, "")

	cr := e.do(req{method: "GET", path: "/v1/consistency"})
	mustStatus(t, "consistency", cr, http.StatusOK)
	var c struct {
		Components []struct {
			Component  string                          `json:"component"`
			Epoch      struct{ Partition, Seq uint64 } `json:"epoch"`
			At         string                          `json:"at"`
			InboxDepth *int                            `json:"inbox_depth"`
			LagMs      *int64                          `json:"lag_ms"`
			LagEvents  *uint64                         `json:"lag_events"`
		} `json:"components"`
	}
	if err := json.Unmarshal(cr.body, &c); err != nil {
		t.Fatalf("consistency %v: %v", cr, err)
	}
	parts, boards := 0, 0
	for _, comp := range c.Components {
		switch {
		case strings.HasPrefix(comp.Component, "partition/"):
			parts++
			if comp.InboxDepth == nil || comp.LagMs != nil {
				t.Errorf("partition component %+v; want inbox_depth and no lag", comp)
			}
		case strings.HasPrefix(comp.Component, "leaderboard/"):
			boards++
			if comp.LagMs == nil || comp.LagEvents == nil || *comp.LagEvents != 0 || *comp.LagMs != 0 {
				t.Errorf("caught-up projection component %+v; want lag_ms 0 and lag_events 0", comp)
			}
		default:
			t.Errorf("unexpected component %q", comp.Component)
		}
		if comp.Epoch.Partition == g.Epoch.Partition && comp.Epoch.Seq != 0 && (comp.Epoch.Seq != g.Epoch.Seq || comp.At == "") {
			t.Errorf("component %+v; want seq %d with its time", comp, g.Epoch.Seq)
		}
	}
	if parts != e.eng.Partitions() || boards != e.eng.Partitions() {
		t.Errorf("consistency lists %d partitions and %d projections; want %d each", parts, boards, e.eng.Partitions())
	}

	mustStatus(t, "healthz", e.do(req{method: "GET", path: "/healthz"}), http.StatusOK)
	mustStatus(t, "readyz", e.do(req{method: "GET", path: "/readyz"}), http.StatusOK)
	u.down.Store(true)
	checkProblem(t, "readyz when the engine is down", e.do(req{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, "not_ready")
	mustStatus(t, "healthz when the engine is down", e.do(req{method: "GET", path: "/healthz"}), http.StatusOK)

	m := e.do(req{method: "GET", path: "/metrics"})
	mustStatus(t, "metrics", m, http.StatusOK)
	for _, want := range []string{`cairn_request_duration_seconds_count{operation="claim",service="cairn"} 1`, "cairn_decisions_total", "go_goroutines"} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAudit covers the three answers of /v1/admin/audit.
func TestAudit(t *testing.T) {
	var verdict atomic.Int32 // 0 ok, 1 violated, 2 error
	e := newEnv(t, envOption{api: func(c *Config) {
		c.Audit = func(ctx context.Context) (any, bool, error) {
			switch verdict.Load() {
			case 0:
				return map[string]any{"ok": true, "events": 3}, true, nil
			case 1:
				return map[string]any{"ok": false, "violations": []string{"I1 h/x granted 3 > tickets 2"}}, false, nil
			}
			return nil, false, errors.New("disk read failed at offset 42")
		}
	}})
	audit := func() resp { return e.do(req{method: "GET", path: "/v1/admin/audit", auth: testAdmin}) }
	r := audit()
	mustStatus(t, "audit ok", r, http.StatusOK)
	if m := decodeJSON(t, r); m["ok"] != true {
		t.Fatalf("audit ok = %s; want the report", r.body)
	}
	verdict.Store(1)
	m := checkProblem(t, "audit violated", audit(), http.StatusConflict, "invariant_violated")
	if rep, _ := m["report"].(map[string]any); rep == nil || rep["ok"] != false {
		t.Fatalf("violated audit report = %v; want the report as `report`", m["report"])
	}
	verdict.Store(2)
	r = audit()
	checkProblem(t, "audit error", r, http.StatusInternalServerError, "internal")
	if strings.Contains(string(r.body), "offset 42") {
		t.Fatalf("a 500 leaks the internal error: %s", r.body)
	}
}

// TestConfigValidate checks that every bad field is reported at once and
// defaults are filled.
func TestConfigValidate(t *testing.T) {
	var c Config
	err := c.Validate()
	for _, want := range []string{"Engine", "Board", "Secret", "AdminToken"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(zero Config) = %v; want it to name %s", err, want)
		}
	}
	if c.BodyLenMax != BodyLenMaxDefault || c.RequestTimeout != RequestTimeoutDefault || c.Clock == nil || c.Logger == nil || c.Metrics == nil {
		t.Errorf("Validate did not fill the defaults: %+v", c)
	}
	bad := Config{Engine: &unready{}, Board: &stuckBoard{}, Secret: []byte(testSecret), AdminToken: "has a space inside!", RegionLenMax: 20, AfterWaitMax: -1}
	err = bad.Validate()
	for _, want := range []string{"AdminToken", "RegionLenMax", "AfterWaitMax"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(bad) = %v; want it to name %s", err, want)
		}
	}
	if _, err := New(bad); err == nil {
		t.Errorf("New(bad config) succeeded")
	}
}

// TestRouting checks 404 and 405 answers and HEAD on GET routes.
func TestRouting(t *testing.T) {
	e := newEnv(t, envOption{})
	r := e.do(req{method: "PATCH", path: "/v1/admin/hunts/h1", auth: testAdmin})
	checkProblem(t, "PATCH hunt", r, http.StatusMethodNotAllowed, "method_not_allowed")
	if got := r.header.Get("Allow"); got != "GET, HEAD, PUT" {
		t.Errorf("Allow = %q; want GET, HEAD, PUT", got)
	}
	checkProblem(t, "unknown path", e.do(req{method: "GET", path: "/v2/wallet"}), http.StatusNotFound, "not_found")
	checkProblem(t, "root", e.do(req{method: "GET", path: "/"}), http.StatusNotFound, "not_found")
	mustStatus(t, "HEAD healthz", e.do(req{method: "HEAD", path: "/healthz"}), http.StatusOK)
}
