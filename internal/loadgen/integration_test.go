package loadgen_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/leaderboard"
	"github.com/cairnhq/cairn/internal/loadgen"
)

const (
	itSecret = "integration-secret-0123456789abcdef"
	itAdmin  = "integration-admin-token-0123456789"
)

// realServer wires a real Cairn (embedded engine on a temp dir, leaderboard
// projection, HTTP API with the audit) the way `cairn serve` does, on
// 127.0.0.1. It returns the server and the engine, for an offline check.
func realServer(t *testing.T) (*httptest.Server, *embedded.Engine) {
	t.Helper()
	eng, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 16})
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	board, err := leaderboard.New(leaderboard.Options{Partitions: eng.Partitions()})
	if err != nil {
		t.Fatalf("leaderboard.New: %v", err)
	}
	eng.Subscribe(board)
	srv, err := httpapi.New(httpapi.Config{
		Engine: eng, Board: board, Secret: []byte(itSecret), AdminToken: itAdmin,
		Audit: func(ctx context.Context) (any, bool, error) {
			r, err := audit.Check(ctx, eng, board)
			return r, r.OK, err
		},
	})
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	eng.Subscribe(srv.Feed())

	ctx, cancel := context.WithCancel(context.Background())
	engDone, boardDone := make(chan error, 1), make(chan error, 1)
	go func() { boardDone <- board.Run(ctx) }()
	go func() { engDone <- eng.Run(ctx) }()
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.RegisterOnShutdown(srv.EndStreams)
	hs.Start()
	t.Cleanup(func() {
		srv.EndStreams()
		hs.Close()
		cancel()
		if err := <-engDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("engine Run: %v", err)
		}
		<-boardDone
		if err := eng.Close(); err != nil {
			t.Errorf("engine Close: %v", err)
		}
	})
	return hs, eng
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
	hs, eng := realServer(t)

	res, err := loadgen.Run(context.Background(), itConfig(hs.URL, loadgen.ScenarioHunt))
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

	res, err = loadgen.Run(context.Background(), itConfig(hs.URL, loadgen.ScenarioStorm))
	if err != nil {
		t.Fatalf("Run(storm): %v", err)
	}
	requireClean(t, res)
	for _, r := range res.Storm {
		if r.Granted != 1 || r.SoldOut != r.Claims-1 {
			t.Errorf("storm round %+v; want exactly 1 granted, the rest sold_out", r)
		}
	}

	cfg := itConfig(hs.URL, loadgen.ScenarioReplay)
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
	online, err := loadgen.Audit(context.Background(), hs.URL, itAdmin)
	if err != nil || !online.OK || online.Events != rep.Events {
		t.Errorf("Audit(online) = %s, %v; want OK with %d events like the offline check", online.Verdict(), err, rep.Events)
	}
	if resp, err := http.Get(hs.URL + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("server unhealthy after the runs: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
