package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/leaderboard"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// Test fixtures: a hunt around Paris. Hotspots are placed at distinct points
// so they fall in several partitions.
const (
	testSecret = "test-secret-0123456789abcdef-0123456789"
	testAdmin  = "admin-token-0123456789"
	parisLat   = 48.8566
	parisLon   = 2.3522
)

// testEnv is a real Cairn API on loopback: the embedded engine on a temp
// dir, the real leaderboard projection, and the server with NewHTTPServer's
// timeouts behind httptest. It is wired as internal/node.New wires a node
// (projection and feed subscribed, projection rebuilt, engine and projection
// run); this internal test cannot import node, which imports httpapi.
type testEnv struct {
	t      testing.TB
	eng    *embedded.Engine
	board  *leaderboard.Projection
	api    *Server
	srv    *httptest.Server
	client *http.Client
	reg    *prometheus.Registry
	keys   atomic.Int64 // unique Idempotency-Key suffixes
}

type envOption struct {
	api   func(*Config)
	eng   func(*embedded.Config)
	conns int // client MaxConnsPerHost; 0 = 64
	// ioTimeout overrides the server's ReadTimeout and WriteTimeout (SSE tests).
	ioTimeout time.Duration
	// engineFails: the test makes a commit fail, so Run returns ErrUnavailable.
	engineFails bool
}

func newEnv(t testing.TB, opt envOption) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics := telemetry.New(reg)
	ecfg := embedded.Config{Dir: t.TempDir(), Metrics: metrics}
	if opt.eng != nil {
		opt.eng(&ecfg)
	}
	eng, err := embedded.Open(ecfg)
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	cfg := Config{
		Engine: eng, Secret: []byte(testSecret), AdminToken: testAdmin,
		Metrics: metrics, Registry: reg,
		// Most tests send many requests as one player; the per-player limit,
		// on in production, is off here unless a test (abuse_test.go) sets
		// ClaimRate back to 0, the default.
		ClaimRate: LimitOff,
	}
	if opt.api != nil {
		opt.api(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The stack is built the way every node is (Assemble, which
	// internal/node and so cmd/cairn serve use too).
	board, api, err := Assemble(ctx, eng, leaderboard.Options{}, cfg)
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	engDone, boardDone := make(chan error, 1), make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	go func() { boardDone <- board.Run(ctx) }()

	srv := httptest.NewUnstartedServer(api.Handler())
	hs := NewHTTPServer("", nil)
	srv.Config.ReadHeaderTimeout, srv.Config.ReadTimeout = hs.ReadHeaderTimeout, hs.ReadTimeout
	srv.Config.WriteTimeout, srv.Config.IdleTimeout, srv.Config.MaxHeaderBytes = hs.WriteTimeout, hs.IdleTimeout, hs.MaxHeaderBytes
	if opt.ioTimeout > 0 {
		srv.Config.ReadTimeout, srv.Config.WriteTimeout = opt.ioTimeout, opt.ioTimeout
	}
	srv.Config.RegisterOnShutdown(api.EndStreams)
	srv.Start()

	conns := opt.conns
	if conns == 0 {
		conns = 64
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	e := &testEnv{t: t, eng: eng, board: board, api: api, srv: srv, reg: reg,
		client: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
	t.Cleanup(func() {
		api.EndStreams()
		srv.Close()
		tr.CloseIdleConnections()
		cancel()
		if err := <-engDone; err != nil && !(opt.engineFails && errors.Is(err, engine.ErrUnavailable)) {
			t.Errorf("engine Run: %v", err)
		}
		if err := <-boardDone; err != nil {
			t.Errorf("board Run: %v", err)
		}
		if err := eng.Close(); err != nil {
			t.Errorf("engine Close: %v", err)
		}
	})
	// Calls before Run answer ErrClosed; wait until the writers run.
	waitFor(t, "engine ready", func() bool { return eng.Ready() == nil })
	return e
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// token mints a player token valid for an hour.
func (e *testEnv) token(player string) string {
	e.t.Helper()
	tok, err := MintToken([]byte(testSecret), hunt.PlayerID(player), time.Hour, time.Now())
	if err != nil {
		e.t.Fatalf("MintToken(%q): %v", player, err)
	}
	return tok
}

// key returns a fresh Idempotency-Key.
func (e *testEnv) key() string { return "k-" + strconv.FormatInt(e.keys.Add(1), 10) }

// resp is a read answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// req describes a request; auth is the bearer token ("" for none).
type req struct {
	method, path, auth string
	header             map[string]string
	multi              http.Header // added as is (repeated headers)
	body               string
	rawBody            io.Reader
}

func (e *testEnv) do(q req) resp {
	e.t.Helper()
	var body io.Reader = strings.NewReader(q.body)
	if q.rawBody != nil {
		body = q.rawBody
	}
	hr, err := http.NewRequest(q.method, e.srv.URL+q.path, body)
	if err != nil {
		e.t.Fatalf("NewRequest(%s %s): %v", q.method, q.path, err)
	}
	if q.auth != "" {
		hr.Header.Set("Authorization", "Bearer "+q.auth)
	}
	for k, v := range q.header {
		hr.Header[k] = []string{v}
	}
	for k, vs := range q.multi {
		hr.Header[k] = append(hr.Header[k], vs...)
	}
	res, err := e.client.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", q.method, q.path, err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// mustStatus fails unless r has the status.
func mustStatus(t testing.TB, what string, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s = %v; want status %d", what, r, status)
	}
}

// decodeJSON decodes r's body into a map.
func decodeJSON(t testing.TB, r resp) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %v: %v", r, err)
	}
	return m
}

// checkProblem fails unless r is a problem document with status and code
// and every required member.
func checkProblem(t testing.TB, what string, r resp, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s = %v; want status %d code %s", what, r, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: Content-Type = %q; want application/problem+json", what, ct)
	}
	m := decodeJSON(t, r)
	if m["type"] != problemBase+code || m["code"] != code {
		t.Fatalf("%s: type %v code %v; want %s%s", what, m["type"], m["code"], problemBase, code)
	}
	if m["status"] != json.Number(strconv.Itoa(status)) {
		t.Fatalf("%s: status member %v; want %d", what, m["status"], status)
	}
	if s, _ := m["title"].(string); s == "" {
		t.Fatalf("%s: no title in %v", what, r)
	}
	if s, _ := m["detail"].(string); s == "" {
		t.Fatalf("%s: no detail in %v", what, r)
	}
	return m
}

// putHunt creates a hunt with the given JSON body (admin).
func (e *testEnv) putHunt(id, body string) {
	e.t.Helper()
	r := e.do(req{method: "PUT", path: "/v1/admin/hunts/" + id, auth: testAdmin, body: body})
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		e.t.Fatalf("PUT hunt %s = %v; want 201 or 200", id, r)
	}
}

// spot is a test hotspot.
type spot struct {
	id               string
	lat, lon         float64
	tickets, reward  int64
	points           int64
	opensAt, closeAt string
}

func (s spot) json() string {
	b := fmt.Sprintf(`{"id":%q,"lat":%v,"lon":%v,"tickets":%d,"reward":%d,"points":%d`, s.id, s.lat, s.lon, s.tickets, s.reward, s.points)
	if s.opensAt != "" {
		b += fmt.Sprintf(`,"opens_at":%q`, s.opensAt)
	}
	if s.closeAt != "" {
		b += fmt.Sprintf(`,"closes_at":%q`, s.closeAt)
	}
	return b + "}"
}

// importSpots imports hotspots as NDJSON (admin) and checks the count.
func (e *testEnv) importSpots(huntID string, spots ...spot) {
	e.t.Helper()
	var b strings.Builder
	for _, s := range spots {
		b.WriteString(s.json())
		b.WriteByte('\n')
	}
	r := e.do(req{method: "POST", path: "/v1/admin/hunts/" + huntID + "/hotspots", auth: testAdmin,
		header: map[string]string{"Content-Type": "application/x-ndjson"}, body: b.String()})
	mustStatus(e.t, "import", r, http.StatusOK)
	if m := decodeJSON(e.t, r); m["imported"] != json.Number(strconv.Itoa(len(spots))) {
		e.t.Fatalf("import = %v; want imported %d", r, len(spots))
	}
}

// claim posts a claim from the hotspot's own position unless at is given.
func (e *testEnv) claim(tok, huntID, spotID, key string, lat, lon float64) resp {
	e.t.Helper()
	h := map[string]string{}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	return e.do(req{method: "POST", path: "/v1/hunts/" + huntID + "/hotspots/" + spotID + "/claim", auth: tok,
		header: h, body: fmt.Sprintf(`{"lat":%v,"lon":%v}`, lat, lon)})
}

// wallet reads the player's balance.
func (e *testEnv) wallet(tok string) int64 {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/v1/wallet", auth: tok})
	mustStatus(e.t, "GET /v1/wallet", r, http.StatusOK)
	n, err := decodeJSON(e.t, r)["balance"].(json.Number).Int64()
	if err != nil {
		e.t.Fatalf("wallet balance in %v: %v", r, err)
	}
	return n
}

// basicHunt sets up hunt "h1" with the given hotspots.
func (e *testEnv) basicHunt(spots ...spot) {
	e.t.Helper()
	e.putHunt("h1", `{"name":"Paris","claim_radius_m":50,"max_speed_mps":0}`) // movement has its own tests
	e.importSpots("h1", spots...)
}

// at returns a hotspot i steps east of Paris' centre, ~1.1 km apart, so the
// hotspots spread over geohash cells and partitions.
func at(i int) (float64, float64) { return parisLat + float64(i%7)*0.01, parisLon + float64(i/7)*0.01 }

func numSpot(i int, tickets int64) spot {
	lat, lon := at(i)
	return spot{id: "s" + strconv.Itoa(i), lat: lat, lon: lon, tickets: tickets, reward: 10 + int64(i), points: 5 + int64(i)}
}
