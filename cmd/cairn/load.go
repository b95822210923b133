package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/loadgen"
)

const loadUsage = `usage: cairn load [flags]

Drives an open-loop load at a Cairn server on this machine, then runs its
audit (GET /v1/admin/audit). Exits 1 if an invariant is violated.

  cairn load --rate 2000 --duration 5s --scenario hunt --json
  cairn load --scenario storm --concurrency 10000 --rounds 3
  cairn load --scenario uniform --rate 5000:30000 --duration 60s

Player tokens are signed with CAIRN_SECRET and the hunt is set up with
CAIRN_ADMIN_TOKEN, read from the environment or else from <data>/secrets.env.

flags:
`

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, loadUsage); fs.PrintDefaults() }
	target := fs.String("target", "http://127.0.0.1:8080", "base URL of the server (loopback hosts only)")
	rate := fs.String("rate", "1000", "requests per second, or R1:R2 for a linear ramp over --duration (not storm)")
	duration := fs.Duration("duration", 10*time.Second, "how long the schedule runs (not storm)")
	scenario := fs.String("scenario", loadgen.ScenarioHunt, "one of "+strings.Join(loadgen.Scenarios, ", "))
	players := fs.Int("players", loadgen.PlayersDefault, "players (each with its own token)")
	hotspots := fs.Int("hotspots", 0, fmt.Sprintf("hotspots to import (default %d for hunt, %d for uniform and replay)",
		loadgen.HuntHotspotsDefault, loadgen.SpreadHotspotsDefault))
	concurrency := fs.Int("concurrency", loadgen.StormConcurrencyDefault, "storm: concurrent claims per round on one single-ticket hotspot")
	rounds := fs.Int("rounds", loadgen.StormRoundsDefault, "storm: rounds")
	huntID := fs.String("hunt", "", "hunt to create or reuse (default load-<unix seconds>)")
	subscribers := fs.Int("subscribers", 4, "hunt: live-feed (SSE) subscribers")
	inflight := fs.Int("inflight", loadgen.InFlightMaxDefault, "requests in flight at most; beyond it a due request is a \"client saturated\" error")
	timeout := fs.Duration("timeout", loadgen.RequestTimeoutDefault, "timeout of one request")
	seed := fs.Uint64("seed", 0, "random seed (0: from the clock)")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object (and no progress line)")
	procs := fs.Int("procs", loadProcsDefault(), "threads running the generator's Go code at once (GOMAXPROCS; 0 keeps Go's own, the default when\n"+
		"GOMAXPROCS is set). One leaves the other cores to the server and spares thread wake-ups")
	dataDir := fs.String("data", envOr("CAIRN_DATA", "./cairn-data"), "data directory holding secrets.env, when CAIRN_SECRET / CAIRN_ADMIN_TOKEN are unset")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairn load: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	cfg := loadgen.Config{
		Target: *target, Scenario: *scenario, Duration: *duration, Players: *players, Hotspots: *hotspots,
		Concurrency: *concurrency, Rounds: *rounds, Hunt: hunt.HuntID(*huntID), Subscribers: *subscribers,
		InFlightMax: *inflight, RequestTimeout: *timeout, Seed: *seed,
	}
	if *scenario != loadgen.ScenarioStorm {
		r, err := loadgen.ParseRate(*rate)
		if err != nil {
			return fmt.Errorf("--rate: %w", err)
		}
		cfg.Rate = r
	}
	sec, err := loadSecrets(*dataDir, os.Getenv)
	if err != nil {
		return err
	}
	cfg.Secret, cfg.AdminToken = []byte(sec.secret), sec.adminToken
	if !*jsonOut && isTerminal(stderr) {
		cfg.Progress = stderr
	}
	if *procs < 0 {
		return fmt.Errorf("--procs %d: want 0 or more", *procs)
	}
	if *procs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(*procs))
	}

	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.WriteText(stdout)
	}
	switch {
	case res.Violated():
		return fmt.Errorf("%w: %s", errViolation, violationSummary(res))
	case res.Verify == nil || !res.Verify.Ran:
		return fmt.Errorf("the load ran but the audit did not: %s", res.Verify.Error)
	}
	return nil
}

// violationSummary is the first violation the run saw: its own, else the audit's verdict.
func violationSummary(r *loadgen.Result) string {
	if len(r.Violations) > 0 {
		s := r.Violations[0]
		if n := len(r.Violations); n > 1 {
			s += fmt.Sprintf(" (and %d more)", n-1)
		}
		return s
	}
	return r.Verify.Verdict
}

// loadProcsDefault is --procs' default: 1, unless GOMAXPROCS says otherwise.
func loadProcsDefault() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return 1
}

// isTerminal reports whether w is a character device (a terminal), where a
// live progress line makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
