package main

// Fault tests on the built binary and on the in-process stack: a kill -9 at each named point of the claim pipeline, a commit
// that fails (an injected fsync failure, and a real full disk on a small
// tmpfs when the test may mount one). After every fault: each claim
// answered 201 replays as the same grant, claims whose answer was lost
// resolve by retrying their key, wallets equal their grants' rewards, no
// hotspot over-grants, no player holds two tickets of one hotspot, and the
// server's own audit passes. Figures are logged and recorded in docs/FAULTS.md.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/node"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// TestFaultHookNeedsOptIn: the binary refuses to start with a hook
// variable but without CAIRN_TEST_HOOKS=1.
func TestFaultHookNeedsOptIn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real server; skipped with -short")
	}
	cmd := exec.Command(faultBinary(t), "serve", "--addr", freeAddr(t), "--data", t.TempDir())
	cmd.Env = append(os.Environ(), crashAtEnv+"=before-commit:1", hooksEnv+"=", failAtEnv+"=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), hooksEnv+"=1") {
		t.Fatalf("serve with %s but no %s = %v\n%s\nwant exit 1 naming %s=1", crashAtEnv, hooksEnv, err, out, hooksEnv)
	}
}

// TestDefaultBinaryHasNoFaultHooks: the binary an operator builds
// (go build, no tags) contains no trace of the test hooks, so no
// environment can arm them; the cairnfault build, which the fault tests
// run, does (the control that shows the search would find them).
func TestDefaultBinaryHasNoFaultHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped with -short")
	}
	const marker = "CAIRN_TEST_"
	for _, c := range []struct {
		name, bin string
		want      bool
	}{
		{"default build", cairnBinary(t), false},
		{"-tags " + faultTag, faultBinary(t), true},
	} {
		b, err := os.ReadFile(c.bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Count(b, []byte(marker)); (got > 0) != c.want {
			t.Errorf("%s: %d occurrences of %q in %s; want any: %v", c.name, got, marker, c.bin, c.want)
		}
	}
}

// faultWorld is a hunt on one node (restarted across faults) and a record
// of everything sent to it and what came back.
type faultWorld struct {
	t        *testing.T
	c        *crashClient
	rng      *rand.Rand
	hotspots int
	tickets  int
	reward   int64
	spacing  float64 // degrees of latitude between hotspots
	seq      int

	mu       sync.Mutex
	acked    map[crashClaim]claimBody // answered 201
	lost     map[crashClaim]int       // no answer, or 5xx: outcome unknown; value = round
	sent     []crashClaim
	statuses map[string]int // "201", "409", "503 unavailable", "error", ...
}

const (
	faultPlayers = 100
	faultLat     = 48.8566
	faultLon     = 2.3522
	faultSpacing = 0.001
)

func newFaultWorld(t *testing.T, base string, hotspots, tickets int, reward int64) *faultWorld {
	t.Helper()
	w := &faultWorld{
		t: t, c: &crashClient{http: &http.Client{Timeout: 10 * time.Second}, base: base, token: map[hunt.PlayerID]string{}},
		rng: rand.New(rand.NewPCG(5, 9)), hotspots: hotspots, spacing: faultSpacing, tickets: tickets, reward: reward,
		acked: map[crashClaim]claimBody{}, lost: map[crashClaim]int{}, statuses: map[string]int{},
	}
	for i := 0; i < faultPlayers; i++ {
		pl := hunt.PlayerID(fmt.Sprintf("p%03d", i))
		tok, err := httpapi.MintToken([]byte(testSecret), pl, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		w.c.token[pl] = tok
	}
	return w
}

// setup creates the hunt and its hotspots.
func (w *faultWorld) setup() {
	w.t.Helper()
	if st, b, _, err := w.c.do("PUT", "/v1/admin/hunts/fault", testAdmin, "", map[string]any{"name": "fault", "max_speed_mps": 0}); err != nil || st >= 300 {
		w.t.Fatalf("PUT hunt = %d %s %v", st, b, err)
	}
	spots := make([]map[string]any, w.hotspots)
	for i := range spots {
		spots[i] = map[string]any{"id": fmt.Sprintf("s%02d", i), "lat": faultLat + float64(i)*w.spacing,
			"lon": faultLon, "tickets": w.tickets, "reward": w.reward, "points": 3}
	}
	if st, b, _, err := w.c.do("POST", "/v1/admin/hunts/fault/hotspots", testAdmin, "", spots); err != nil || st != 200 {
		w.t.Fatalf("import = %d %s %v", st, b, err)
	}
}

func (w *faultWorld) newClaim() crashClaim {
	s := w.rng.IntN(w.hotspots)
	w.seq++
	return crashClaim{player: hunt.PlayerID(fmt.Sprintf("p%03d", w.rng.IntN(faultPlayers))),
		key: fmt.Sprintf("f%06d", w.seq), hotspot: fmt.Sprintf("s%02d", s),
		lat: faultLat + float64(s)*w.spacing, lon: faultLon}
}

func (w *faultWorld) post(cl crashClaim) (int, []byte, http.Header, error) {
	return w.c.do("POST", "/v1/hunts/fault/hotspots/"+cl.hotspot+"/claim", w.c.token[cl.player], cl.key,
		map[string]float64{"lat": cl.lat, "lon": cl.lon})
}

// drive sends claims from workers until stop is closed or max are sent,
// recording each answer. Allowed during a fault: 201, 409 (decided), and
// 503 or no answer at all (outcome unknown); anything else fails the test.
func (w *faultWorld) drive(round, workers, max int, stop <-chan struct{}) {
	work := make(chan crashClaim)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Go(func() {
			for cl := range work {
				st, b, h, err := w.post(cl)
				w.mu.Lock()
				switch {
				case err != nil:
					w.statuses["no answer"]++
					w.lost[cl] = round
				case st == http.StatusCreated:
					var body claimBody
					if json.Unmarshal(b, &body) != nil || body.Outcome != "granted" {
						w.t.Errorf("claim %+v = 201 %s; want a grant", cl, b)
					}
					w.acked[cl] = body
					w.statuses["201"]++
				case st == http.StatusConflict:
					w.statuses["409"]++
				case st == http.StatusServiceUnavailable && h.Get("Retry-After") != "":
					var p struct{ Code string }
					_ = json.Unmarshal(b, &p)
					w.statuses["503 "+p.Code]++
					w.lost[cl] = round
				default:
					w.t.Errorf("claim %+v = %d %s; want 201, 409, or 503 with Retry-After", cl, st, b)
				}
				w.mu.Unlock()
			}
		})
	}
feed:
	for i := 0; i < max; i++ {
		cl := w.newClaim()
		w.mu.Lock()
		w.sent = append(w.sent, cl)
		w.mu.Unlock()
		select {
		case work <- cl:
		case <-stop:
			break feed
		}
	}
	close(work)
	wg.Wait()
}

// verdict is what verify found about the claims whose answer was lost.
type verdict struct {
	lostReplayed map[int]int // round -> lost claims that turned out durable (replayed on retry)
	lostFresh    map[int]int // round -> lost claims that were not durable (decided on retry)
	grants       int
}

// verify checks the invariants against a healthy node at w.c.base.
func (w *faultWorld) verify() verdict {
	t := w.t
	t.Helper()
	v := verdict{lostReplayed: map[int]int{}, lostFresh: map[int]int{}}
	for cl, want := range w.acked {
		st, b, h, err := w.post(cl)
		var got claimBody
		_ = json.Unmarshal(b, &got)
		if err != nil || st != 201 || got != want || h.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay of acknowledged %+v = %d %s (replayed %q) %v; want 201 %+v", cl, st, b, h.Get("Idempotent-Replayed"), err, want)
		}
	}
	rewards := map[hunt.PlayerID]int64{}
	perSpot := map[string]int{}
	held := map[string]bool{}
	for _, cl := range w.sent {
		st, b, h, err := w.post(cl)
		if err != nil || (st != 201 && st != 409) {
			t.Fatalf("resolve %+v = %d %s %v; want 201 or 409", cl, st, b, err)
		}
		if round, ok := w.lost[cl]; ok {
			if h.Get("Idempotent-Replayed") == "true" {
				v.lostReplayed[round]++
			} else {
				v.lostFresh[round]++
			}
		}
		if st == 201 {
			rewards[cl.player] += w.reward
			perSpot[cl.hotspot]++
			k := string(cl.player) + "/" + cl.hotspot
			if held[k] {
				t.Fatalf("I2: %s holds two tickets of %s", cl.player, cl.hotspot)
			}
			held[k] = true
			v.grants++
		}
	}
	for s, n := range perSpot {
		if n > w.tickets {
			t.Fatalf("I1: hotspot %s granted %d > %d tickets", s, n, w.tickets)
		}
	}
	for pl, tok := range w.c.token {
		st, b, _, err := w.c.do("GET", "/v1/wallet", tok, "", nil)
		var wal struct {
			Balance int64 `json:"balance"`
		}
		if err != nil || st != 200 || json.Unmarshal(b, &wal) != nil {
			t.Fatalf("wallet %s = %d %s %v", pl, st, b, err)
		}
		if wal.Balance != rewards[pl] {
			t.Fatalf("I4: wallet of %s = %d; want %d (sum of its grants' rewards)", pl, wal.Balance, rewards[pl])
		}
	}
	if st, b, _, err := w.c.do("GET", "/v1/admin/audit", testAdmin, "", nil); err != nil || st != 200 {
		t.Fatalf("audit = %d %s %v", st, b, err)
	}
	return v
}

// crashRound starts the node with the crash hook armed at point:n, runs
// load(base, died) until the node has died, and fails the test unless the
// hook killed it with SIGKILL.
func crashRound(t *testing.T, bin, data, addr, point string, n int, load func(base string, died <-chan struct{}), serveFlags ...string) {
	t.Helper()
	t.Setenv(hooksEnv, "1")
	t.Setenv(crashAtEnv, fmt.Sprintf("%s:%d", point, n))
	p := startServe(t, bin, data, addr, serveFlags...)
	died := make(chan struct{})
	var ws syscall.WaitStatus
	var exited bool
	go func() { ws, exited = exitOf(p, 30*time.Second); close(died) }()
	load(p.base, died)
	<-died
	if !exited || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		p.kill()
		t.Fatalf("node with %s=%s:%d: exited %v, status %v; want it killed by SIGKILL at the hook\n%s",
			crashAtEnv, point, n, exited, ws, p.logs.String())
	}
}

// exitOf waits up to within for p to exit and returns its wait status.
func exitOf(p *proc, within time.Duration) (ws syscall.WaitStatus, exited bool) {
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
		return p.cmd.ProcessState.Sys().(syscall.WaitStatus), true
	case <-time.After(within):
		return 0, false
	}
}

// TestCrashPoints kills the node (a true kill -9, from inside) at each
// named point of the pipeline, several times each, through the test-only
// CAIRN_TEST_CRASH_AT hook, and checks after a clean restart that nothing
// acknowledged was lost and nothing was applied twice. At the points after
// the commit, some claim whose answer the crash swallowed must turn out
// durable (its retry is a replay): the killed batch's. (Before the commit
// there is no such check from outside: another partition's batch may have
// committed unanswered at the same instant, and claims sent after the
// crash are unanswered too.)
func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	const cycles = 5
	bin := faultBinary(t)
	// The claim pipeline's points, each reached by every claim. A point
	// reached otherwise (a snapshot, a log truncation) needs a test that
	// drives the node there.
	claimPoints := []string{embedded.FaultMidBatch, embedded.FaultBeforeCommit, embedded.FaultAfterCommit, embedded.FaultBeforeAnswer}
	for i, point := range claimPoints {
		durable := point == embedded.FaultAfterCommit || point == embedded.FaultBeforeAnswer
		t.Run(point, func(t *testing.T) {
			data, addr := t.TempDir(), freeAddr(t)
			t.Setenv(hooksEnv, "")
			t.Setenv(crashAtEnv, "")
			p := startServe(t, bin, data, addr)
			defer func() { p.kill() }()
			w := newFaultWorld(t, p.base, 20, 60, 7)
			w.setup() // before any hook: the crash counts claims only
			p.kill()
			rng := rand.New(rand.NewPCG(uint64(i), 77))
			for round := 0; round < cycles; round++ {
				n := 5 + rng.IntN(40) // batches; mid-batch counts requests
				if point == embedded.FaultMidBatch {
					n = 20 + rng.IntN(100)
				}
				crashRound(t, bin, data, addr, point, n, func(_ string, died <-chan struct{}) { w.drive(round, 16, 5000, died) })
			}
			t.Setenv(hooksEnv, "")
			t.Setenv(crashAtEnv, "")
			p = startServe(t, bin, data, addr)
			v := w.verify()
			for round := 0; round < cycles; round++ {
				if durable && v.lostReplayed[round] == 0 {
					t.Fatalf("round %d: no claim whose answer the crash at %s swallowed was durable; want the killed batch's (%v)", round, point, v.lostReplayed)
				}
			}
			t.Logf("%s: %d kill -9 cycles, %d claims sent, %d acknowledged, %d grants in all; unanswered claims durable per cycle %v, not durable %v; answers %v; losses: 0",
				point, cycles, len(w.sent), len(w.acked), v.grants, v.lostReplayed, v.lostFresh, w.statuses)
		})
	}
}

// TestCommitFailureServe: the node's commits start failing (the test hook
// CAIRN_TEST_FAIL_AT, what a failing fsync does to the embedded store):
// claims in flight answer 503 and never 2xx, /readyz never answers 200
// again, the node exits by itself (non-zero, not by a signal), and after a
// restart every acknowledged claim is present.
func TestCommitFailureServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real server; skipped with -short")
	}
	bin := faultBinary(t)
	data, addr := t.TempDir(), freeAddr(t)
	t.Setenv(hooksEnv, "1")
	t.Setenv(failAtEnv, "before-commit:40") // the import is a few batches; claims run into it
	p := startServe(t, bin, data, addr)
	defer func() { p.kill() }()
	w := newFaultWorld(t, p.base, 20, 60, 7)
	w.setup()

	// Once a claim has been refused 503, /readyz must not say 200 again.
	var sawFailure atomic.Bool
	var readyAfter, refusedAfter atomic.Int64
	stopReady := make(chan struct{})
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		hc := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stopReady:
				return
			case <-time.After(5 * time.Millisecond):
			}
			failed := sawFailure.Load()
			res, err := hc.Get(p.base + "/readyz")
			if err != nil {
				if failed {
					refusedAfter.Add(1)
				}
				continue
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if failed {
				if res.StatusCode == http.StatusOK {
					t.Errorf("/readyz = 200 after the node refused a claim 503")
				}
				readyAfter.Add(1)
			}
		}
	}()
	died := make(chan struct{})
	var ws syscall.WaitStatus
	var exited bool
	go func() { ws, exited = exitOf(p, 30*time.Second); close(died) }()
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		for {
			select {
			case <-died:
				return
			case <-time.After(2 * time.Millisecond):
				w.mu.Lock()
				for k := range w.statuses {
					if strings.HasPrefix(k, "503") {
						sawFailure.Store(true)
					}
				}
				w.mu.Unlock()
			}
		}
	}()
	w.drive(0, 16, 5000, died)
	<-died
	<-watch
	close(stopReady)
	<-readyDone
	if !exited || ws.Signaled() || ws.ExitStatus() == 0 || !strings.Contains(p.logs.String(), "commit failed") {
		p.kill()
		t.Fatalf("node after a failed commit: exited %v, status %v; want a non-zero exit of its own, logging the commit failure\n%s", exited, ws, p.logs.String())
	}
	if w.statuses["503 unavailable"] == 0 {
		t.Fatalf("answers %v; want some 503 unavailable", w.statuses)
	}

	t.Setenv(hooksEnv, "")
	t.Setenv(failAtEnv, "")
	p = startServe(t, bin, data, addr)
	v := w.verify()
	t.Logf("failing commits: %d claims sent, %d acknowledged before the failure, answers %v; /readyz after the first 503: %d answered (never 200), %d refused; exit status %d; after restart %d grants, losses: 0",
		len(w.sent), len(w.acked), w.statuses, readyAfter.Load(), refusedAfter.Load(), ws.ExitStatus(), v.grants)
}

// TestFullDisk runs the node on a small tmpfs and fills it. Below
// --disk-free-min-mib of free space the node refuses writes with 503 +
// Retry-After before deciding anything (Pebble would treat a failed WAL
// write as fatal), stays up with /readyz 503, answers nothing 2xx that did
// not land, and accepts claims again by itself once space returns; every
// acknowledged claim is then present. Needs root (mount); skipped with a
// message otherwise.
func TestFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real server; skipped with -short")
	}
	mnt := t.TempDir()
	// Pebble preallocates 110% of its 64 MiB memtable limit for each WAL, so
	// the disk holds one WAL and some margin; the filler takes the rest.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("full-disk variant skipped: cannot mount a tmpfs here (%v: %s); TestCommitFailureServe covers the failing commit", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	bin := faultBinary(t)
	addr := freeAddr(t)
	p := startServe(t, bin, mnt, addr, "--disk-free-min-mib", "8")
	defer func() { p.kill() }() // before the umount (a cleanup)
	w := newFaultWorld(t, p.base, 20, 1000, 7)
	w.setup()
	w.drive(0, 4, 200, nil)
	acked0 := len(w.acked)

	fillerPath := filepath.Join(mnt, "filler")
	filler, err := os.Create(fillerPath)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	filler.Close()

	// Full: within a few seconds every claim is refused, the node stays up.
	refused := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !refused; {
		before := w.statuses["503 unavailable"]
		w.drive(1, 4, 50, nil)
		refused = w.statuses["503 unavailable"]-before == 50
	}
	if !refused {
		t.Fatalf("node on a full disk still decides claims: answers %v\n%s", w.statuses, tail(p.logs.String(), 4000))
	}
	if st, _, _, err := w.c.do("GET", "/readyz", "", "", nil); err != nil || st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz on a full disk = %d %v; want 503", st, err)
	}
	if p.cmd.Process.Signal(syscall.Signal(0)) != nil {
		t.Fatalf("node exited on a full disk; want it up and refusing\n%s", tail(p.logs.String(), 4000))
	}

	// Space returns: the node takes claims again by itself.
	if err := os.Remove(fillerPath); err != nil {
		t.Fatal(err)
	}
	recovered := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !recovered; {
		before := w.statuses["201"] + w.statuses["409"]
		w.drive(2, 4, 20, nil)
		recovered = w.statuses["201"]+w.statuses["409"]-before == 20
	}
	if !recovered {
		t.Fatalf("node did not recover after space returned: answers %v\n%s", w.statuses, tail(p.logs.String(), 4000))
	}
	v := w.verify()
	t.Logf("full disk: %d claims sent, %d acknowledged (%d before the disk filled), answers %v; refused while full, recovered without a restart, %d grants, losses: 0",
		len(w.sent), len(w.acked), acked0, w.statuses, v.grants)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestCommitFailureReadyz is the in-process view of a failed commit, where
// the node is not allowed to exit: the claim that hit the failure and every
// later one answer 503 unavailable with Retry-After, /readyz answers 503 for
// as long as the process lives, nothing 2xx is answered, and reopening the
// store on the same (now healthy) directory finds exactly the acknowledged
// claims.
func TestCommitFailureReadyz(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	hook := func(point string) error {
		if point == embedded.FaultBeforeCommit && failing.Load() {
			return errors.New("injected: fsync: input/output error")
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	metrics := telemetry.New(reg)
	eng, err := embedded.Open(embedded.Config{Dir: dir, Partitions: 8, Metrics: metrics, FaultHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(context.Background(), node.Config{Engine: eng, Metrics: metrics, Registry: reg,
		API: httpapi.Config{Secret: []byte(testSecret), AdminToken: testAdmin, ClaimRate: httpapi.LimitOff}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- n.Run(ctx) }() // returns early once the commit fails (the engine stops)
	srv := httptest.NewServer(n.API().Handler())
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		n.API().EndStreams()
		srv.Close()
		cancel()
		<-runDone
		eng.Close()
	}
	defer stop()
	deadline := time.Now().Add(20 * time.Second)
	for eng.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("engine not ready in 20 s")
		}
		time.Sleep(2 * time.Millisecond) // polling readiness
	}

	w := newFaultWorld(t, srv.URL, 10, 100, 5)
	w.setup()
	w.drive(0, 8, 200, nil)
	if len(w.acked) == 0 {
		t.Fatalf("no claim granted before the fault: %v", w.statuses)
	}
	before := len(w.acked)
	failing.Store(true)
	w.drive(1, 8, 200, nil)
	if len(w.acked) != before || w.statuses["503 unavailable"] == 0 {
		t.Fatalf("claims after the failure: %d more acknowledged, answers %v; want none acknowledged and 503 unavailable", len(w.acked)-before, w.statuses)
	}
	failing.Store(false) // the disk is healthy again, but the node stays failed until restarted
	w.drive(2, 8, 100, nil)
	if len(w.acked) != before {
		t.Fatalf("claims after the disk recovered, before a restart: %d acknowledged; want 0 (memory may be ahead of disk)", len(w.acked)-before)
	}
	for i := 0; i < 20; i++ {
		st, b, h, err := w.c.do("GET", "/readyz", "", "", nil)
		if err != nil || st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("/readyz after a failed commit = %d %s %v; want 503 with Retry-After", st, b, err)
		}
	}
	stop()

	// Restart on the same directory, now healthy: the acknowledged claims are
	// there, and each lost one resolves (not a replay: it never committed).
	eng2, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	type pk struct {
		p hunt.PlayerID
		k string
	}
	logged := map[pk]bool{}
	if err := eng2.Events(context.Background(), nil, func(e *hunt.Event) error {
		if e.Kind == hunt.KindClaimCompleted && e.Outcome == hunt.Granted {
			logged[pk{e.Player, e.Key}] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for cl := range w.acked {
		if !logged[pk{cl.player, cl.key}] {
			t.Fatalf("acknowledged claim %+v missing after restart", cl)
		}
	}
	if len(logged) != len(w.acked) {
		t.Fatalf("log holds %d grants; want exactly the %d acknowledged (before-commit failures never commit)", len(logged), len(w.acked))
	}
	rep, err := audit.Check(context.Background(), eng2, nil)
	if err != nil || !rep.OK {
		t.Fatalf("audit after restart = %+v, %v", rep, err)
	}
	t.Logf("failed commit in process: %d acknowledged before, answers %v, /readyz 503 ×20; after restart %d grants logged, audit ok",
		before, w.statuses, len(logged))
}

// TestServeAbuseFlags: the serve flags reach the server. --admin-addr moves
// the admin routes to their own listener (the public one answers them 404),
// --claim-rate/--claim-burst set the per-player limit, --trusted-proxy
// takes CIDRs and refuses anything else.
func TestServeAbuseFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real server; skipped with -short")
	}
	bin := cairnBinary(t)
	out, err := exec.Command(bin, "serve", "--trusted-proxy", "10.0.0.0/8,not-a-cidr").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "trusted-proxy") {
		t.Fatalf("serve --trusted-proxy not-a-cidr = %v\n%s\nwant a usage error (exit 2)", err, out)
	}

	adminAddr := freeAddr(t)
	p := startServe(t, bin, t.TempDir(), freeAddr(t), "--admin-addr", adminAddr, "--claim-rate", "0.25", "--claim-burst", "2",
		"--trusted-proxy", "127.0.0.0/8", "--trusted-proxy", "::1/128")
	defer p.kill()
	w := newFaultWorld(t, p.base, 3, 10, 7)
	if st, b, _, err := w.c.do("PUT", "/v1/admin/hunts/fault", testAdmin, "", map[string]any{"name": "fault", "max_speed_mps": 0}); err != nil || st != 404 {
		t.Fatalf("PUT hunt on the public listener = %d %s %v; want 404", st, b, err)
	}
	// /metrics and /v1/consistency are the admin listener's; the probes are on both.
	for _, c := range []struct {
		base, path string
		want       int
	}{
		{p.base, "/metrics", 404}, {p.base, "/v1/consistency", 404}, {p.base, "/healthz", 200},
		{"http://" + adminAddr, "/metrics", 200}, {"http://" + adminAddr, "/v1/consistency", 200}, {"http://" + adminAddr, "/readyz", 200},
	} {
		res, err := http.Get(c.base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("GET %s%s = %d; want %d", c.base, c.path, res.StatusCode, c.want)
		}
	}
	w.c.base = "http://" + adminAddr
	w.setup()
	w.c.base = p.base
	var got []int
	for i := 0; i < 3; i++ {
		cl := crashClaim{player: "p001", key: fmt.Sprintf("flag-%d", i), hotspot: fmt.Sprintf("s%02d", i), lat: faultLat + float64(i)*w.spacing, lon: faultLon}
		st, b, h, err := w.post(cl)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, st)
		if i == 2 && (st != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(string(b), "rate_limited")) {
			t.Fatalf("third claim = %d %s (Retry-After %q); want 429 rate_limited with Retry-After", st, b, h.Get("Retry-After"))
		}
	}
	if got[0] != 201 || got[1] != 201 {
		t.Fatalf("claims under --claim-burst 2 = %v; want 201 201 429", got)
	}
}
