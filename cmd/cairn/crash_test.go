package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
)

const (
	testSecret = "crash-test-secret-0123456789abcdef"
	testAdmin  = "crash-test-admin-token-0123456789"
)

// Test-only environment of a faultBinary (faulthook.go); the names are
// repeated here because faulthook.go is not compiled without its tag, and
// TestFaultHookNames (tagged) checks that they agree.
const (
	hooksEnv   = "CAIRN_TEST_HOOKS"
	crashAtEnv = "CAIRN_TEST_CRASH_AT"
	failAtEnv  = "CAIRN_TEST_FAIL_AT"
)

// faultTag is the build tag that compiles the test hooks in (faulthook.go).
const faultTag = "cairnfault"

// builds holds the binaries compiled by this test binary run, one per tag
// set, each built once.
var builds struct {
	sync.Mutex
	m map[string]*built
}

type built struct {
	once sync.Once
	path string
	err  error
}

// buildCairn compiles cmd/cairn with tags (empty: the default, production
// build) once per test binary run and returns its path.
func buildCairn(t *testing.T, tags string) string {
	t.Helper()
	builds.Lock()
	if builds.m == nil {
		builds.m = map[string]*built{}
	}
	b := builds.m[tags]
	if b == nil {
		b = &built{}
		builds.m[tags] = b
	}
	builds.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "cairn")
		out, err := exec.Command("go", "build", "-tags", tags, "-o", b.path, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build -tags %q: %v\n%s", tags, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// cairnBinary is the binary an operator runs: the default build, without
// the test hooks.
func cairnBinary(t *testing.T) string { return buildCairn(t, "") }

// faultBinary is the binary the crash and fault tests run: built with the
// cairnfault tag, so CAIRN_TEST_* can crash or fail it at a named point.
func faultBinary(t *testing.T) string { return buildCairn(t, faultTag) }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one running `cairn serve`.
type proc struct {
	cmd  *exec.Cmd
	base string
	logs *logBuffer
}

func startServe(t *testing.T, bin, dataDir, addr string, extra ...string) *proc {
	t.Helper()
	return startServeEnv(t, bin, dataDir, addr, append(os.Environ(), "CAIRN_SECRET="+testSecret, "CAIRN_ADMIN_TOKEN="+testAdmin), extra...)
}

// startServeEnv is startServe with the process's whole environment given.
func startServeEnv(t *testing.T, bin, dataDir, addr string, env []string, extra ...string) *proc {
	t.Helper()
	// --claim-rate 0: the crash loops resolve thousands of keys per player
	// back to back; the per-player limit has its own tests (httpapi).
	args := append([]string{"serve", "--addr", addr, "--data", dataDir, "--partitions", "8", "--claim-rate", "0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: "http://" + addr, logs: logs}
	// Each probe has its own bound, so a node that accepts but never answers
	// cannot hold the loop past its deadline.
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(serveReadyTimeout)
	last := "no answer yet"
	for {
		resp, err := hc.Get(p.base + "/readyz")
		if err != nil {
			last = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
			last = resp.Status
		}
		if time.Now().After(deadline) {
			p.kill()
			t.Fatalf("cairn serve on %s not ready after %v (last /readyz: %s); output:\n%s", addr, serveReadyTimeout, last, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a child process's readiness; nothing to wait on
	}
}

// serveReadyTimeout bounds how long startServe waits for /readyz to answer 200.
const serveReadyTimeout = 30 * time.Second

// logBuffer collects a process's output; exec copies into it from its own
// goroutine, so reads while (or right after) the process runs are locked.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = p.cmd.Process.Wait()
}

type crashClient struct {
	http  *http.Client
	base  string
	token map[hunt.PlayerID]string
}

func (c *crashClient) do(method, path, auth, key string, body any) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

type crashClaim struct {
	player  hunt.PlayerID
	key     string
	hotspot string
	lat     float64
	lon     float64
}

type claimBody struct {
	ClaimID string `json:"claim_id"`
	Outcome string `json:"outcome"`
	Reward  int64  `json:"reward"`
	Player  string `json:"player"`
	Hotspot string `json:"hotspot"`
}

// TestCrashKill9 runs the built binary, claims under load, kill -9s it at
// random moments 20 times and restarts it on the same data directory. Every
// claim answered 201 before a kill must replay as the same grant afterwards,
// claims whose answer was lost are resolved by retrying their key, and then
// I1-I4 must hold: each wallet equals the sum of its grants' rewards, no
// hotspot grants more than its tickets, no player holds two tickets of one
// hotspot, and the server's own audit passes.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	crashLoop(t, 20)
}

// TestCrashKill9Redis is the same loop with the node on a Redis store
// (appendfsync always): the Cairn node is killed 10 times; Redis stays up.
func TestCrashKill9Redis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	srv := redistest.Start(t)
	crashLoop(t, 10, "--store", srv.URL())
}

// crashLoop drives claims at a `cairn serve` started with extra flags and
// kill -9s it kills times (see TestCrashKill9).
func crashLoop(t *testing.T, kills int, extra ...string) {
	const (
		players    = 200
		hotspots   = 40
		tickets    = 120
		reward     = 7
		workers    = 32
		claimsMax  = 400 // per round; the round ends at the kill anyway
		centerLat  = 48.8566
		centerLon  = 2.3522
		spacingDeg = 0.001
	)
	bin := faultBinary(t)
	data := t.TempDir()
	addr := freeAddr(t)
	p := startServe(t, bin, data, addr, extra...)
	defer func() { p.kill() }()

	c := &crashClient{http: &http.Client{Timeout: 5 * time.Second}, base: p.base, token: map[hunt.PlayerID]string{}}
	if st, b, _, err := c.do("PUT", "/v1/admin/hunts/crash", testAdmin, "", map[string]any{"name": "crash", "max_speed_mps": 0}); err != nil || st >= 300 {
		t.Fatalf("PUT hunt = %d %s %v", st, b, err)
	}
	spots := make([]map[string]any, hotspots)
	for i := range spots {
		spots[i] = map[string]any{"id": fmt.Sprintf("s%02d", i), "lat": centerLat + float64(i)*spacingDeg,
			"lon": centerLon, "tickets": tickets, "reward": reward, "points": 3}
	}
	if st, b, _, err := c.do("POST", "/v1/admin/hunts/crash/hotspots", testAdmin, "", spots); err != nil || st != 200 {
		t.Fatalf("import = %d %s %v", st, b, err)
	}
	for i := 0; i < players; i++ {
		pl := hunt.PlayerID(fmt.Sprintf("p%03d", i))
		tok, err := httpapi.MintToken([]byte(testSecret), pl, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c.token[pl] = tok
	}

	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[crashClaim]claimBody{} // answered 201 before some kill
	var sent []crashClaim               // every claim ever sent, answered or not
	seq := 0
	for round := 0; round < kills; round++ {
		batch := make([]crashClaim, claimsMax)
		for i := range batch {
			s := rng.IntN(hotspots)
			seq++
			batch[i] = crashClaim{player: hunt.PlayerID(fmt.Sprintf("p%03d", rng.IntN(players))),
				key: fmt.Sprintf("k%06d", seq), hotspot: fmt.Sprintf("s%02d", s),
				lat: centerLat + float64(s)*spacingDeg, lon: centerLon}
		}
		sent = append(sent, batch...)
		var mu sync.Mutex
		work := make(chan crashClaim)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for cl := range work {
					st, b, _, err := c.do("POST", "/v1/hunts/crash/hotspots/"+cl.hotspot+"/claim", c.token[cl.player], cl.key,
						map[string]float64{"lat": cl.lat, "lon": cl.lon})
					if err != nil || st != 201 {
						continue
					}
					var body claimBody
					if json.Unmarshal(b, &body) != nil {
						continue
					}
					mu.Lock()
					acked[cl] = body
					mu.Unlock()
				}
			}()
		}
		killAt := time.Duration(20+rng.IntN(300)) * time.Millisecond
		timer := time.NewTimer(killAt)
	feed:
		for _, cl := range batch {
			select {
			case work <- cl:
			case <-timer.C:
				break feed
			}
		}
		p.kill() // kill -9 mid-load (or just after the round's last claim)
		close(work)
		wg.Wait()
		timer.Stop()
		p = startServe(t, bin, data, addr, extra...)
	}

	// Every acknowledged grant replays, identically, after all the crashes.
	for cl, want := range acked {
		st, b, h, err := c.do("POST", "/v1/hunts/crash/hotspots/"+cl.hotspot+"/claim", c.token[cl.player], cl.key,
			map[string]float64{"lat": cl.lat, "lon": cl.lon})
		var got claimBody
		_ = json.Unmarshal(b, &got)
		if err != nil || st != 201 || got != want || h.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay of acked %+v = %d %s (replayed=%q) %v; want 201 %+v", cl, st, b, h.Get("Idempotent-Replayed"), err, want)
		}
	}
	// Resolve every claim whose answer was lost by retrying its key; tally grants.
	rewards := map[hunt.PlayerID]int64{}
	perSpot := map[string]int{}
	held := map[string]bool{}
	for _, cl := range sent {
		st, b, _, err := c.do("POST", "/v1/hunts/crash/hotspots/"+cl.hotspot+"/claim", c.token[cl.player], cl.key,
			map[string]float64{"lat": cl.lat, "lon": cl.lon})
		if err != nil || (st != 201 && st != 409) {
			t.Fatalf("resolve %+v = %d %s %v; want 201 or 409", cl, st, b, err)
		}
		if st == 201 {
			rewards[cl.player] += reward
			perSpot[cl.hotspot]++
			k := string(cl.player) + "/" + cl.hotspot
			if held[k] {
				t.Fatalf("I2: %s holds two tickets of %s", cl.player, cl.hotspot)
			}
			held[k] = true
		}
	}
	for s, n := range perSpot {
		if n > tickets {
			t.Fatalf("I1: hotspot %s granted %d > %d tickets", s, n, tickets)
		}
	}
	for pl, tok := range c.token {
		st, b, _, err := c.do("GET", "/v1/wallet", tok, "", nil)
		var w struct {
			Balance int64 `json:"balance"`
		}
		if err != nil || st != 200 || json.Unmarshal(b, &w) != nil {
			t.Fatalf("wallet %s = %d %s %v", pl, st, b, err)
		}
		if w.Balance != rewards[pl] {
			t.Fatalf("I4: wallet of %s = %d; want %d (sum of its grants' rewards)", pl, w.Balance, rewards[pl])
		}
	}
	st, b, _, err := c.do("GET", "/v1/admin/audit", testAdmin, "", nil)
	if err != nil || st != 200 {
		t.Fatalf("audit = %d %s %v", st, b, err)
	}
	if len(acked) == 0 {
		t.Fatalf("no claim was acknowledged in %d rounds; the test exercised nothing", kills)
	}
	t.Logf("%d kills, %d claims sent, %d acknowledged before a kill, %d grants in all", kills, len(sent), len(acked), len(held))
}
