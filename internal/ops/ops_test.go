package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/node"
	"github.com/cairnhq/cairn/internal/ops"
)

const (
	testSecret = "ops-test-secret-0123456789abcdef"
	testAdmin  = "ops-test-admin-token-0123456789"
)

// world is a running node (no listener) with a console of the test's own
// configuration, served with the API by one httptest server.
type world struct {
	t    *testing.T
	n    *node.Node
	base string
}

func newWorld(t *testing.T, cfg ops.Config) *world {
	t.Helper()
	eng, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	n, err := node.New(context.Background(), node.Config{
		Engine: eng,
		API:    httpapi.Config{Secret: []byte(testSecret), AdminToken: testAdmin, ClaimRate: httpapi.LimitOff},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine, cfg.Board, cfg.API = eng, n.Board(), n.API()
	console, err := ops.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eng.Subscribe(console)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- n.Run(ctx) }()
	go func() { done <- console.Run(ctx) }()
	mux := http.NewServeMux()
	mux.Handle("/ops/", console.Handler())
	mux.Handle("/", n.API().Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		n.API().EndStreams()
		srv.Close()
		cancel()
		for range 2 {
			<-done
		}
	})
	w := &world{t: t, n: n, base: srv.URL}
	deadline := time.Now().Add(20 * time.Second)
	for eng.Ready() != nil { // the engine starts with Run
		if time.Now().After(deadline) {
			t.Fatal("engine not ready in 20 s")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	return w
}

// do sends a request with the admin token (unless token is "") and decodes a JSON answer into out.
func (w *world) do(method, path, token, body string, out any) int {
	w.t.Helper()
	req, err := http.NewRequest(method, w.base+path, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			w.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return res.StatusCode
}

// seed creates hunt "h" with a grid of rows x cols hotspots 0.01° apart
// from (48.0, 2.0), each with 2 tickets.
func (w *world) seed(rows, cols int) {
	w.t.Helper()
	if st := w.do("PUT", "/v1/admin/hunts/h", testAdmin, `{"name":"H","claim_radius_m":100}`, nil); st != 201 {
		w.t.Fatalf("PUT hunt: %d", st)
	}
	var b strings.Builder
	for i := range rows {
		for j := range cols {
			fmt.Fprintf(&b, `{"id":"s-%d-%d","lat":%.4f,"lon":%.4f,"tickets":2,"reward":1,"points":1}`+"\n", i, j, 48+0.01*float64(i), 2+0.01*float64(j))
		}
	}
	if st := w.do("POST", "/v1/admin/hunts/h/hotspots", testAdmin, b.String(), nil); st != 200 {
		w.t.Fatalf("import: %d", st)
	}
}

type mapAnswer struct {
	Building     bool         `json:"building"`
	Mode         string       `json:"mode"`
	HuntHotspots int64        `json:"hunt_hotspots"`
	HuntLeft     int64        `json:"hunt_tickets_left"`
	InView       int64        `json:"in_view"`
	Cells        [][7]float64 `json:"cells"`
	Points       []struct {
		ID          string `json:"id"`
		TicketsLeft int64  `json:"tickets_left"`
	} `json:"points"`
	Bounds *[4]float64 `json:"hunt_bounds"`
}

func (w *world) mapOf(query string) mapAnswer {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var m mapAnswer
		if st := w.do("GET", "/ops/api/hunts/h/map"+query, testAdmin, "", &m); st != 200 {
			w.t.Fatalf("GET map%s: %d", query, st)
		}
		if !m.Building {
			return m
		}
		if time.Now().After(deadline) {
			w.t.Fatal("the map index is still building after 20 s")
		}
	}
}

// TestMap: small boxes answer hotspot by hotspot, large ones per cell, and
// the cells' sums add up to the hotspots in view whatever the zoom; a cell
// answer never exceeds CellsMax.
func TestMap(t *testing.T) {
	w := newWorld(t, ops.Config{PointsMax: 50, CellsMax: 40})
	w.seed(20, 20) // 400 hotspots over 0.19° x 0.19°

	whole := w.mapOf("")
	if whole.HuntHotspots != 400 || whole.HuntLeft != 800 || whole.Bounds == nil {
		t.Fatalf("whole hunt = %d hotspots, %d left, bounds %v; want 400, 800, set", whole.HuntHotspots, whole.HuntLeft, whole.Bounds)
	}
	small := w.mapOf("?bbox=47.9995,1.9995,48.0205,2.0305&width_px=800&height_px=600") // 3 rows x 4 cols
	if small.Mode != "points" || len(small.Points) != 12 || small.InView != 12 {
		t.Fatalf("small box: mode %q, %d points, in view %d; want points, 12, 12", small.Mode, len(small.Points), small.InView)
	}
	for _, wpx := range []int{100, 800, 5000} {
		big := w.mapOf(fmt.Sprintf("?bbox=47,1,49,3&width_px=%d&height_px=600", wpx))
		if big.Mode != "cells" || len(big.Cells) == 0 || len(big.Cells) > 40 {
			t.Fatalf("width %d: mode %q with %d cells; want cells, 1..40", wpx, big.Mode, len(big.Cells))
		}
		var n, left float64
		for _, c := range big.Cells {
			n += c[4]
			left += c[6]
		}
		if n != 400 || left != 800 || big.InView != 400 {
			t.Errorf("width %d: cells hold %v hotspots and %v tickets left (in view %d); want 400, 800, 400", wpx, n, left, big.InView)
		}
	}
}

// TestClaimsFollowGrants: a claim decided while a console watches is in the
// console's feed, and the map's tickets left drop by one.
func TestClaimsFollowGrants(t *testing.T) {
	w := newWorld(t, ops.Config{})
	w.seed(2, 2)
	before := w.mapOf("?bbox=47,1,49,3&width_px=10&height_px=10") // cells: a 10-pixel canvas
	var feed struct {
		Cursor uint64 `json:"cursor"`
		Claims []struct {
			Hotspot, Player, Outcome string
			TicketsLeft              int64 `json:"tickets_left"`
		} `json:"claims"`
	}
	if st := w.do("GET", "/ops/api/hunts/h/claims", testAdmin, "", &feed); st != 200 || len(feed.Claims) != 0 {
		t.Fatalf("claims before any = %d, %v; want 200, none", st, feed.Claims)
	}
	tok, err := httpapi.MintToken([]byte(testSecret), "p1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", w.base+"/v1/hunts/h/hotspots/s-1-1/claim", strings.NewReader(`{"lat":48.01,"lon":2.01}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", "k1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("claim = %d; want 201", res.StatusCode)
	}
	after := feed.Cursor
	if st := w.do("GET", fmt.Sprintf("/ops/api/hunts/h/claims?after=%d", after), testAdmin, "", &feed); st != 200 {
		t.Fatalf("claims = %d", st)
	}
	if len(feed.Claims) != 1 || feed.Claims[0].Hotspot != "s-1-1" || feed.Claims[0].Player != "p1" ||
		feed.Claims[0].Outcome != hunt.Granted.String() || feed.Claims[0].TicketsLeft != 1 {
		t.Fatalf("claims after the grant = %+v; want one granted claim of p1 on s-1-1 with 1 left", feed.Claims)
	}
	now := w.mapOf("?bbox=47,1,49,3&width_px=10&height_px=10")
	if now.HuntLeft != before.HuntLeft-1 {
		t.Errorf("tickets left in the hunt = %d after a grant; want %d", now.HuntLeft, before.HuntLeft-1)
	}
	var left float64
	for _, c := range now.Cells {
		left += c[6]
	}
	if left != float64(before.HuntLeft-1) {
		t.Errorf("the cells hold %v tickets left after a grant; want %d", left, before.HuntLeft-1)
	}
}

// TestAuthAndBadInput: the API needs the admin token (the page itself does
// not), and bad queries are 4xx problems, never a 500.
func TestAuthAndBadInput(t *testing.T) {
	w := newWorld(t, ops.Config{})
	w.seed(1, 1)
	if st := w.do("GET", "/ops/", "", "", nil); st != 200 {
		t.Errorf("GET /ops/ without a token = %d; want 200 (the page holds no data)", st)
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/ops/api/stats", "", 401},
		{"/ops/api/stats", "wrong-token-0123456789abcdef", 401},
		{"/ops/api/stats", testAdmin, 200},
		{"/ops/api/stats?seconds=0", testAdmin, 400},
		{"/ops/api/stats?seconds=100000", testAdmin, 400},
		{"/ops/api/consistency", testAdmin, 200},
		{"/ops/api/hunts/nope/map", testAdmin, 404},
		{"/ops/api/hunts/h/map?bbox=1,2,3", testAdmin, 400},
		{"/ops/api/hunts/h/map?bbox=1,2,0,3", testAdmin, 400},
		{"/ops/api/hunts/h/map?bbox=-91,0,0,1", testAdmin, 400},
		{"/ops/api/hunts/h/map?bbox=NaN,0,1,1", testAdmin, 400},
		{"/ops/api/hunts/h/map?bbox=0,0,1,1&width_px=0", testAdmin, 400},
		{"/ops/api/hunts/h/map?bbox=0,0,1,1&height_px=99999999", testAdmin, 400},
		{"/ops/api/hunts/h/claims?after=-1", testAdmin, 400},
		{"/ops/api/hunts/h/leaderboard?limit=0", testAdmin, 400},
		{"/ops/api/hunts/h/leaderboard?limit=5", testAdmin, 200},
		{"/ops/api/hunts/bad%20id/claims", testAdmin, 400},
		{"/ops/api/nothing", testAdmin, 404},
	} {
		if st := w.do("GET", tc.path, tc.token, "", nil); st != tc.want {
			t.Errorf("GET %s = %d; want %d", tc.path, st, tc.want)
		}
	}
	if st := w.do("POST", "/ops/api/stats", testAdmin, "", nil); st != 405 {
		t.Errorf("POST /ops/api/stats = %d; want 405", st)
	}
}

// TestConfigValidate: every bad field is reported at once.
func TestConfigValidate(t *testing.T) {
	c := ops.Config{PointsMax: 5000, CellsMax: -1}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil; want errors")
	}
	for _, want := range []string{"Engine", "Board", "API", "PointsMax", "CellsMax"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to name %s", err, want)
		}
	}
}
