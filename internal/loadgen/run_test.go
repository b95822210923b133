package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func runConfig(target, scenario string) Config {
	return Config{
		Target: target, Scenario: scenario, Rate: Rate{200, 200}, Duration: time.Second,
		Players: 50, Hotspots: 20, Concurrency: 40, Rounds: 3, Subscribers: 2,
		Secret: []byte(testSecret), AdminToken: testAdmin, Seed: 7,
	}
}

func mustRun(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run(%s) error = %v", cfg.Scenario, err)
	}
	return res
}

// TestRunHunt runs the hunt scenario against the fake and checks that every
// part of the mix happened and the result carries every documented field.
func TestRunHunt(t *testing.T) {
	_, srv := newFake(t, nil)
	cfg := runConfig(srv.URL, ScenarioHunt)
	var progress bytes.Buffer
	cfg.Progress = &progress
	res := mustRun(t, cfg)
	if res.Scheduled != 200 || res.Sent != 200 || res.Responses != 200 {
		t.Errorf("scheduled %d, sent %d, responses %d; want 200 each", res.Scheduled, res.Sent, res.Responses)
	}
	if res.Errors != 0 {
		t.Errorf("errors = %d %v %v; want 0", res.Errors, res.ErrorKinds, res.ErrorSamples)
	}
	for _, lbl := range []string{"201 granted", "409 sold_out", "200 leaderboard", "200 wallet"} {
		if res.Outcomes[lbl] == 0 {
			t.Errorf("outcomes = %v; want some %q", res.Outcomes, lbl)
		}
	}
	if res.Outcomes["201 granted replayed"]+res.Outcomes["409 sold_out replayed"]+res.Outcomes["409 already_claimed replayed"]+
		res.Outcomes["422 too_far replayed"] == 0 {
		t.Errorf("outcomes = %v; want some replayed retries", res.Outcomes)
	}
	if res.Replay == nil || res.Replay.Pairs == 0 || res.Replay.Compared == 0 || res.Replay.Mismatches != 0 {
		t.Errorf("replay stats = %+v; want retries compared without mismatches", res.Replay)
	}
	if res.Staleness == nil || res.Staleness.Reads == 0 || res.Staleness.P99MS < 2.9 || res.Staleness.P99MS > 3.1 {
		t.Errorf("staleness = %+v; want the fake's 3 ms from every leaderboard read", res.Staleness)
	}
	if res.SSE == nil || res.SSE.Subscribers != 2 || res.SSE.Events == 0 || res.SSE.Disconnects != 0 {
		t.Errorf("sse = %+v; want 2 subscribers that saw grants and stayed connected", res.SSE)
	}
	if res.Setup == nil || res.Setup.Hotspots != 20 {
		t.Errorf("setup = %+v; want 20 hotspots imported", res.Setup)
	}
	if !res.OK || res.Violated() || res.Verify == nil || !res.Verify.Ran || !strings.HasPrefix(res.Verify.Verdict, "verify: OK") {
		t.Errorf("OK %v, verify %+v; want a clean verdict", res.OK, res.Verify)
	}
	if res.AchievedRPS < 100 || res.AchievedRPS > 220 {
		t.Errorf("achieved_rps = %.1f; want about 200", res.AchievedRPS)
	}

	// The JSON object has every documented field.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "params", "sent", "achieved_rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
		"max_ms", "mean_ms", "errors", "outcomes", "staleness", "sse", "verify", "ok", "operations"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON result lacks %q: %s", k, b)
		}
	}
	params := m["params"].(map[string]any)
	for _, k := range []string{"rate", "duration_s", "players", "hotspots", "target", "hunt", "subscribers"} {
		if _, ok := params[k]; !ok {
			t.Errorf("JSON params lack %q: %v", k, params)
		}
	}

	var text bytes.Buffer
	res.WriteText(&text)
	for _, want := range []string{"scenario hunt", "latency", "outcomes", "201 granted", "staleness", "sse", "verify: OK"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("WriteText lacks %q:\n%s", want, text.String())
		}
	}
}

func TestRunStorm(t *testing.T) {
	f, srv := newFake(t, nil)
	res := mustRun(t, runConfig(srv.URL, ScenarioStorm))
	if len(res.Storm) != 3 {
		t.Fatalf("storm rounds = %d; want 3", len(res.Storm))
	}
	for _, r := range res.Storm {
		if r.Claims != 40 || r.Granted != 1 || r.SoldOut != 39 || r.Other != 0 || !r.Verified {
			t.Errorf("storm round %+v; want 40 claims: 1 granted, 39 sold_out", r)
		}
	}
	if !res.OK || res.Sent != 120 || res.Outcomes["201 granted"] != 3 || res.Outcomes["409 sold_out"] != 117 {
		t.Errorf("storm result OK %v sent %d outcomes %v; want OK, 120 sent, 3 granted, 117 sold_out", res.OK, res.Sent, res.Outcomes)
	}
	f.mu.Lock()
	claims := f.mu.claims
	f.mu.Unlock()
	if claims != 120 {
		t.Errorf("server decided %d claims; want 120", claims)
	}
}

// TestRunStormDetectsDoubleGrant: a server that ignores tickets grants many
// claims of a single-ticket hotspot; the storm must say so and fail.
func TestRunStormDetectsDoubleGrant(t *testing.T) {
	_, srv := newFake(t, func(f *fakeCairn) { f.grantAll = true })
	cfg := runConfig(srv.URL, ScenarioStorm)
	cfg.Rounds = 1
	res := mustRun(t, cfg)
	if !res.Violated() || res.OK || len(res.Violations) != 1 || !strings.Contains(res.Violations[0], "40 of 40 claims") {
		t.Fatalf("storm against a double-granting server: violations %v, OK %v; want one storm violation", res.Violations, res.OK)
	}
	if res.Storm[0].Verified {
		t.Errorf("storm round %+v marked exactly_one_granted", res.Storm[0])
	}
}

func TestRunUniform(t *testing.T) {
	_, srv := newFake(t, nil)
	cfg := runConfig(srv.URL, ScenarioUniform)
	cfg.Hotspots = 1000
	res := mustRun(t, cfg)
	if res.Sent != 200 || res.Errors != 0 || !res.OK {
		t.Errorf("uniform: sent %d errors %d %v OK %v; want 200, 0, OK", res.Sent, res.Errors, res.ErrorSamples, res.OK)
	}
	if res.Outcomes["201 granted"] < 190 {
		t.Errorf("uniform outcomes = %v; want nearly all granted", res.Outcomes)
	}
	if res.Operations["claim"] == nil || res.Operations["claim"].Count != 200 {
		t.Errorf("operations = %v; want 200 claims", res.Operations)
	}
}

func TestRunReplay(t *testing.T) {
	_, srv := newFake(t, nil)
	res := mustRun(t, runConfig(srv.URL, ScenarioReplay))
	if res.Replay == nil || res.Replay.Pairs != 100 || res.Replay.Compared != 100 || res.Replay.Mismatches != 0 {
		t.Errorf("replay = %+v; want 100 pairs, all compared, no mismatch", res.Replay)
	}
	replayed := 0
	for k, n := range res.Outcomes {
		if strings.HasSuffix(k, " replayed") {
			replayed += int(n)
		}
	}
	if replayed != 100 || !res.OK || res.Errors != 0 {
		t.Errorf("outcomes %v (%d replayed), OK %v, errors %d; want 100 replayed answers, OK", res.Outcomes, replayed, res.OK, res.Errors)
	}
}

// TestRunReplayDetectsMismatch: a server that decides retries anew answers
// them with another body and no Idempotent-Replayed; every pair is an error
// and an I3 violation.
func TestRunReplayDetectsMismatch(t *testing.T) {
	_, srv := newFake(t, func(f *fakeCairn) { f.noReplay = true })
	res := mustRun(t, runConfig(srv.URL, ScenarioReplay))
	if res.Replay.Mismatches == 0 || res.ErrorKinds[errMismatch] != res.Replay.Mismatches || !res.Violated() {
		t.Fatalf("replay against a forgetful server: %+v, errors %v, violated %v; want mismatches counted as errors and violations",
			res.Replay, res.ErrorKinds, res.Violated())
	}
	if !strings.HasPrefix(res.Violations[0], "I3 ") {
		t.Errorf("violation %q; want an I3 violation", res.Violations[0])
	}
}

func TestRunAuditVerdicts(t *testing.T) {
	_, srv := newFake(t, func(f *fakeCairn) { f.auditStatus = http.StatusConflict })
	cfg := runConfig(srv.URL, ScenarioUniform)
	cfg.Duration = 100 * time.Millisecond
	res := mustRun(t, cfg)
	if res.OK || !res.Violated() || !res.Verify.Ran || res.Verify.OK ||
		res.Verify.Verdict != "verify: FAIL: I1 hotspot h/x granted 3 > tickets 2 (1 violation)" {
		t.Errorf("audit 409: OK %v violated %v verify %+v; want a FAIL verdict", res.OK, res.Violated(), res.Verify)
	}

	_, srv = newFake(t, func(f *fakeCairn) { f.auditStatus = http.StatusNotFound })
	res = mustRun(t, runConfig(srv.URL, ScenarioUniform))
	if res.OK || res.Violated() || res.Verify.Ran || !strings.Contains(res.Verify.Error, "404") {
		t.Errorf("audit 404: OK %v violated %v verify %+v; want not OK, not violated, an error naming 404", res.OK, res.Violated(), res.Verify)
	}

	rep, err := Audit(context.Background(), srv.URL, "wrong-admin-token")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Audit(wrong token) = %+v, %v; want a 401 error", rep, err)
	}
	if _, err := Audit(context.Background(), "http://10.0.0.1:8080", testAdmin); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Audit(10.0.0.1) error = %v; want ErrNotLoopback", err)
	}
}

func TestRunRefusesBadSetup(t *testing.T) {
	_, srv := newFake(t, nil)
	cfg := runConfig(srv.URL, ScenarioHunt)
	cfg.AdminToken = "not-the-admin-token"
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Run(wrong admin token) error = %v; want the 401 of the hunt setup", err)
	}
	cfg = runConfig("http://192.168.0.1:8080", ScenarioHunt)
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Run(192.168.0.1) error = %v; want ErrNotLoopback", err)
	}
}

// TestRunHuntReconnectsDroppedSubscribers: a server that drops subscribers
// (as Cairn drops slow ones) sees them come back; the drops are counted.
func TestRunHuntReconnectsDroppedSubscribers(t *testing.T) {
	_, srv := newFake(t, func(f *fakeCairn) { f.sseDropAfter = 5 })
	res := mustRun(t, runConfig(srv.URL, ScenarioHunt))
	if res.SSE == nil || res.SSE.Disconnects == 0 || res.SSE.Events <= 5*int64(res.SSE.Subscribers) {
		t.Fatalf("sse = %+v; want disconnects counted and more than %d events (reconnected)", res.SSE, 5*2)
	}
	if res.Errors != 0 || !res.OK {
		t.Errorf("errors %d %v, OK %v; a dropped subscriber is not an error", res.Errors, res.ErrorSamples, res.OK)
	}
}
