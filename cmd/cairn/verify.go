package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/loadgen"
)

// errViolation marks a run or an audit that found a broken invariant (exit 1),
// as opposed to one that could not check.
var errViolation = errors.New("invariant violated")

const verifyUsage = `usage: cairn verify --target URL [--data DIR]   (ask a running server: GET /v1/admin/audit)
       cairn verify --data DIR                  (offline, on a stopped server's data directory)

Checks the invariants I1-I5 and I7 by folding the event log, prints a
one-line verdict and exits 1 on any violation. Offline it also holds every
snapshot of the store to the log: it must load, and equal the fold of the
log up to where it stops (the state checked was itself loaded from the
newest snapshot and the log after it). Online it is valid while the
server takes writes: the state is read between two reads of the log, and a
disagreement is read again for up to ~1.3 s before it counts. Online, the admin token is
CAIRN_ADMIN_TOKEN or <data>/secrets.env. Offline, the server must be stopped
(the store is locked while it runs) and I5 is not checked (no leaderboard).

flags:
`

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verifyUsage); fs.PrintDefaults() }
	target := fs.String("target", "", "base URL of a running server (loopback hosts only)")
	dataDir := fs.String("data", envOr("CAIRN_DATA", "./cairn-data"), "data directory: the store to check offline, or where secrets.env is for --target")
	jsonOut := fs.Bool("json", false, "print the whole report as JSON instead of the verdict line")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairn verify: unexpected arguments %q\n", fs.Args())
		return errUsage
	}

	var rep audit.Report
	var err error
	if *target != "" {
		rep, err = verifyOnline(ctx, *target, *dataDir)
	} else {
		rep, err = verifyOffline(ctx, *dataDir)
	}
	if err != nil {
		return err
	}
	if *jsonOut {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout, rep.Verdict())
	}
	if !rep.OK || rep.ViolationCount > 0 {
		return fmt.Errorf("%w: %d violation(s)", errViolation, max(rep.ViolationCount, len(rep.Violations)))
	}
	return nil
}

func verifyOnline(ctx context.Context, target, dataDir string) (audit.Report, error) {
	sec, err := loadSecrets(dataDir, os.Getenv)
	if err != nil {
		return audit.Report{}, err
	}
	return loadgen.Audit(ctx, target, sec.adminToken)
}

// verifyOffline opens the embedded store the way serve lays it out
// (<data>/store) without running it, and folds its log. Open never creates
// a store here: a missing directory is an error, not an empty "OK".
func verifyOffline(ctx context.Context, dataDir string) (audit.Report, error) {
	dir := filepath.Join(dataDir, "store")
	if _, err := os.Stat(dir); err != nil {
		return audit.Report{}, fmt.Errorf("no embedded store at %s (is --data the server's data directory?): %w", dir, err)
	}
	e, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		return audit.Report{}, fmt.Errorf("open %s (a running server locks it: stop it, or use --target): %w", dir, err)
	}
	rep, checkErr := audit.Check(ctx, e, nil)
	if checkErr == nil {
		// The state just checked was loaded from the newest usable snapshot
		// and the log after it; each snapshot is also held to the log.
		var checks []embedded.SnapshotCheck
		if checks, checkErr = e.CheckSnapshots(); checkErr == nil {
			for _, c := range checks {
				rep.AddSnapshot(c.Name, c.Events, c.Problem)
			}
		}
	}
	if err := e.Close(); err != nil && checkErr == nil {
		checkErr = fmt.Errorf("close %s: %w", dir, err)
	}
	return rep, checkErr
}
