package loadgen_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/loadgen"
	"github.com/cairnhq/cairn/internal/node"
)

const (
	itSecret = "integration-secret-0123456789abcdef"
	itAdmin  = "integration-admin-token-0123456789"
)

// realServer runs a whole node (engine, projection, feed, API) the way
// `cairn serve` builds one, on 127.0.0.1, and returns its base URL.
func realServer(t *testing.T) (string, *embedded.Engine) {
	t.Helper()
	eng, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 16})
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Config{Engine: eng, Addr: "127.0.0.1:0",
		API: httpapi.Config{Secret: []byte(itSecret), AdminToken: itAdmin}})
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("node Run: %v", err)
		}
		if err := eng.Close(); err != nil {
			t.Errorf("engine Close: %v", err)
		}
	})
	base := "http://" + n.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	for eng.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node at %s not ready after 10s: %v", base, eng.Ready())
		}
		time.Sleep(5 * time.Millisecond) // poll interval, bounded by the deadline
	}
	return base, eng
}

func itConfig(target, scenario string) loadgen.Config {
	return loadgen.Config{
		Target: target, Scenario: scenario, Rate: loadgen.Rate{From: 300, To: 300}, Duration: 2 * time.Second,
		Players: 300, Hotspots: 60, Concurrency: 200, Rounds: 2, Subscribers: 2,
		Secret: []byte(itSecret), AdminToken: itAdmin, Seed: 11,
	}
}

// errorsBut5xx counts the errors a healthy server must not cause. (The
// machine is shared: timeouts could happen under load, but at 300 req/s
// they would be a bug worth seeing, so they count too.)
func requireClean(t *testing.T, res *loadgen.Result) {
	t.Helper()
	if res.Errors != 0 {
		t.Errorf("%s: errors = %d %v %v; want 0", res.Scenario, res.Errors, res.ErrorKinds, res.ErrorSamples)
	}
	if !res.OK || res.Violated() || res.Verify == nil || !res.Verify.Ran || !res.Verify.OK {
		t.Errorf("%s: OK %v, violations %v, verify %+v; want a clean run and verdict", res.Scenario, res.OK, res.Violations, res.Verify)
	}
	for k := range res.Outcomes {
		switch k {
		case "201 granted", "409 sold_out", "409 already_claimed", "422 too_far", "200 leaderboard", "200 wallet",
			"201 spent", "409 insufficient_funds",
			"201 granted replayed", "409 sold_out replayed", "409 already_claimed replayed", "422 too_far replayed",
			"201 spent replayed", "409 insufficient_funds replayed":
		default:
			t.Errorf("%s: unexpected outcome %q (%d) in %v", res.Scenario, k, res.Outcomes[k], res.Outcomes)
		}
	}
}

// TestIntegrationHuntStormReplay drives the real HTTP stack with the hunt,
// storm and replay scenarios at small scale; every run ends with the
// server's audit, and the offline check of the same engine agrees.
func TestIntegrationHuntStormReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts a real server")
	}
	base, eng := realServer(t)

	res, err := loadgen.Run(context.Background(), itConfig(base, loadgen.ScenarioHunt))
	if err != nil {
		t.Fatalf("Run(hunt): %v", err)
	}
	requireClean(t, res)
	if res.Sent != 600 || res.Outcomes["201 granted"] == 0 || res.Outcomes["200 leaderboard"] == 0 {
		t.Errorf("hunt: sent %d, outcomes %v; want 600 sent with grants and leaderboard reads", res.Sent, res.Outcomes)
	}
	if res.Replay == nil || res.Replay.Compared == 0 || res.Replay.Mismatches != 0 {
		t.Errorf("hunt: retries %+v; want some compared, none mismatched", res.Replay)
	}
	if res.Staleness == nil || res.Staleness.Reads == 0 {
		t.Errorf("hunt: staleness %+v; want leaderboard reads reporting it", res.Staleness)
	}
	if res.SSE == nil || res.SSE.Events == 0 {
		t.Errorf("hunt: sse %+v; want the subscribers to see grants", res.SSE)
	}

	res, err = loadgen.Run(context.Background(), itConfig(base, loadgen.ScenarioStorm))
	if err != nil {
		t.Fatalf("Run(storm): %v", err)
	}
	requireClean(t, res)
	for _, r := range res.Storm {
		if r.Granted != 1 || r.SoldOut != r.Claims-1 {
			t.Errorf("storm round %+v; want exactly 1 granted, the rest sold_out", r)
		}
	}

	cfg := itConfig(base, loadgen.ScenarioReplay)
	cfg.Duration = time.Second
	res, err = loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run(replay): %v", err)
	}
	requireClean(t, res)
	if res.Replay == nil || res.Replay.Pairs != 150 || res.Replay.Compared != 150 {
		t.Errorf("replay: %+v; want 150 pairs, all compared", res.Replay)
	}

	// The offline check (no projection: I5 skipped) agrees with the online one.
	rep, err := audit.Check(context.Background(), eng, nil)
	if err != nil || !rep.OK || rep.Grants == 0 {
		t.Errorf("audit.Check(engine) = %s, %v; want OK with grants", rep.Verdict(), err)
	}
	// And the same audit through `cairn verify --target`'s path.
	online, err := loadgen.Audit(context.Background(), base, itAdmin)
	if err != nil || !online.OK || online.Events != rep.Events {
		t.Errorf("Audit(online) = %s, %v; want OK with %d events like the offline check", online.Verdict(), err, rep.Events)
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("server unhealthy after the runs: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
