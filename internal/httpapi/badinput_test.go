package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// snapshot is the observable state the bad-input test compares: a wallet,
// the hotspots with their tickets, the leaderboard and every component's epoch.
type snapshot struct {
	wallet      int64
	nearby      string
	leaderboard string
	epochs      string
}

func (e *testEnv) snapshot(tok string) snapshot {
	e.t.Helper()
	nb := e.do(req{method: "GET", auth: tok, path: fmt.Sprintf("/v1/hunts/h1/hotspots?lat=%v&lon=%v&radius_m=50000&limit=1000", parisLat, parisLon)})
	mustStatus(e.t, "nearby", nb, http.StatusOK)
	lb := e.do(req{method: "GET", path: "/v1/hunts/h1/leaderboard?limit=1000"})
	mustStatus(e.t, "leaderboard", lb, http.StatusOK)
	cs := e.do(req{method: "GET", path: "/v1/consistency"})
	mustStatus(e.t, "consistency", cs, http.StatusOK)
	var c struct {
		Components []struct {
			Component string                          `json:"component"`
			Epoch     struct{ Partition, Seq uint64 } `json:"epoch"`
		} `json:"components"`
	}
	if err := json.Unmarshal(cs.body, &c); err != nil || len(c.Components) == 0 {
		e.t.Fatalf("consistency = %v: %v", cs, err)
	}
	var epochs strings.Builder
	for _, comp := range c.Components {
		if comp.Epoch.Seq != 0 {
			fmt.Fprintf(&epochs, "%s=%d.%d ", comp.Component, comp.Epoch.Partition, comp.Epoch.Seq)
		}
	}
	var l struct {
		Entries json.RawMessage `json:"entries"`
	}
	_ = json.Unmarshal(lb.body, &l)
	return snapshot{wallet: e.wallet(tok), nearby: string(nb.body), leaderboard: string(l.Entries), epochs: epochs.String()}
}

// TestBadInput is the bad-input acceptance test: each malformed or hostile
// request gets its documented 4xx as problem+json (type, title, status,
// detail), and the state is the same before and after all of them.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) {
		// Small limits, so oversized bodies stay below loopback socket
		// buffers and the client always reads the 413 instead of a reset.
		c.BodyLenMax = 4 << 10
		c.ImportBodyLenMax = 64 << 10
	}})
	s := numSpot(0, 5)
	e.basicHunt(s, numSpot(1, 5))
	alice := e.token("alice")
	first := e.claim(alice, "h1", s.id, "setup", s.lat, s.lon)
	mustStatus(t, "setup claim", first, http.StatusCreated)
	var grant struct {
		Token string `json:"consistency_token"`
	}
	_ = json.Unmarshal(first.body, &grant)
	mustStatus(t, "catch up", e.do(req{method: "GET", path: "/v1/hunts/h1/leaderboard?after=" + grant.Token}), http.StatusOK)
	before := e.snapshot(alice)

	claimPath := "/v1/hunts/h1/hotspots/" + s.id + "/claim"
	good := fmt.Sprintf(`{"lat":%v,"lon":%v}`, s.lat, s.lon)
	claim := func(body string) req {
		return req{method: "POST", path: claimPath, auth: alice, header: map[string]string{"Idempotency-Key": e.key()}, body: body}
	}
	withKey := func(key string) req {
		r := claim(good)
		r.header["Idempotency-Key"] = key
		if key == "" {
			delete(r.header, "Idempotency-Key")
		}
		return r
	}
	withToken := func(tok string) req {
		r := claim(good)
		r.auth = tok
		return r
	}
	spend := func(body string) req {
		return req{method: "POST", path: "/v1/wallet/spend", auth: alice, header: map[string]string{"Idempotency-Key": e.key()}, body: body}
	}
	get := func(path string) req { return req{method: "GET", path: path, auth: alice} }
	importReq := func(ct, body string) req {
		return req{method: "POST", path: "/v1/admin/hunts/h1/hotspots", auth: testAdmin, header: map[string]string{"Content-Type": ct}, body: body}
	}
	twoKeys := claim(good)
	delete(twoKeys.header, "Idempotency-Key")
	twoKeys.multi = http.Header{"Idempotency-Key": {"k1", "k2"}}
	twoAuth := claim(good)
	twoAuth.auth = ""
	twoAuth.multi = http.Header{"Authorization": {"Bearer " + alice, "Bearer " + alice}}
	tooBig := claim(`{"lat":48.8566,"lon":2.3522` + strings.Repeat(" ", 8<<10) + `}`)
	// One item larger than the import's limit: nothing before it to import.
	bigImport := importReq("", `[{"id":"x","lat":48.8,"lon":2.35,"tickets":1`+strings.Repeat(" ", 128<<10)+`}]`)

	cases := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		// Claim bodies.
		{"not JSON", claim(`{lat: 1, lon: 2}`), 400, "malformed_json"},
		{"empty body", claim(``), 400, "malformed_json"},
		{"JSON null", claim(`null`), 400, "malformed_json"},
		{"array body", claim(`[48.8566, 2.3522]`), 400, "malformed_json"},
		{"lat as string", claim(`{"lat":"48.8566","lon":2.3522}`), 400, "invalid_request"},
		{"lat as bool", claim(`{"lat":true,"lon":2.3522}`), 400, "invalid_request"},
		{"NaN literal", claim(`{"lat":NaN,"lon":2.3522}`), 400, "malformed_json"},
		{"Infinity literal", claim(`{"lat":Infinity,"lon":2.3522}`), 400, "malformed_json"},
		{"overflowing number", claim(`{"lat":1e400,"lon":2.3522}`), 400, "invalid_request"},
		{"lat out of range", claim(`{"lat":90.0001,"lon":2.3522}`), 400, "invalid_request"},
		{"lon out of range", claim(`{"lat":48.8566,"lon":-180.5}`), 400, "invalid_request"},
		{"unknown field", claim(`{"lat":48.8566,"lon":2.3522,"alt":30}`), 400, "invalid_request"},
		{"field in other case", claim(`{"LAT":48.8566,"lon":2.3522}`), 400, "invalid_request"},
		{"duplicate field", claim(`{"lat":48.8566,"lat":48.8566,"lon":2.3522}`), 400, "invalid_request"},
		{"missing lon", claim(`{"lat":48.8566}`), 400, "invalid_request"},
		{"trailing garbage", claim(good + ` x`), 400, "malformed_json"},
		{"two JSON values", claim(good + good), 400, "malformed_json"},
		{"oversized body", tooBig, 413, "body_too_large"},
		// Credentials.
		{"no token", withToken(""), 401, "unauthorized"},
		{"two Authorization headers", twoAuth, 401, "unauthorized"},
		{"admin token as player", withToken(testAdmin), 401, "unauthorized"},
		// Idempotency-Key.
		{"missing key", withKey(""), 400, "missing_idempotency_key"},
		{"empty key", req{method: "POST", path: claimPath, auth: alice, multi: http.Header{"Idempotency-Key": {""}}, body: good}, 400, "bad_idempotency_key"},
		{"key too long", withKey(strings.Repeat("k", 256)), 400, "bad_idempotency_key"},
		{"key with a tab", withKey("a\tb"), 400, "bad_idempotency_key"},
		{"key with a space", withKey("a b"), 400, "bad_idempotency_key"},
		{"key not ASCII", withKey("ключ"), 400, "bad_idempotency_key"},
		{"two keys", twoKeys, 400, "bad_idempotency_key"},
		// Unknown things.
		{"unknown hunt", req{method: "POST", path: "/v1/hunts/nope/hotspots/s0/claim", auth: alice, header: map[string]string{"Idempotency-Key": "u1"}, body: good}, 404, "unknown_hunt"},
		{"unknown hotspot", req{method: "POST", path: "/v1/hunts/h1/hotspots/nope/claim", auth: alice, header: map[string]string{"Idempotency-Key": "u2"}, body: good}, 404, "unknown_hotspot"},
		{"impossible hotspot id", req{method: "POST", path: "/v1/hunts/h1/hotspots/a%20b/claim", auth: alice, header: map[string]string{"Idempotency-Key": "u3"}, body: good}, 404, "unknown_hotspot"},
		{"unknown route", get("/v1/nope"), 404, "not_found"},
		{"GET on claim", req{method: "GET", path: claimPath, auth: alice}, 405, "method_not_allowed"},
		{"DELETE wallet", req{method: "DELETE", path: "/v1/wallet", auth: alice}, 405, "method_not_allowed"},
		{"POST consistency", req{method: "POST", path: "/v1/consistency", body: "{}"}, 405, "method_not_allowed"},
		// Spends.
		{"negative amount", spend(`{"amount":-3}`), 400, "invalid_request"},
		{"zero amount", spend(`{"amount":0}`), 400, "invalid_request"},
		{"fractional amount", spend(`{"amount":1.5}`), 400, "invalid_request"},
		{"exponent amount", spend(`{"amount":1e3}`), 400, "invalid_request"},
		{"string amount", spend(`{"amount":"3"}`), 400, "invalid_request"},
		{"huge amount", spend(`{"amount":99999999999999999999}`), 400, "invalid_request"},
		{"missing amount", spend(`{"reason":"x"}`), 400, "invalid_request"},
		{"reason too long", spend(`{"amount":1,"reason":"` + strings.Repeat("r", 201) + `"}`), 400, "invalid_request"},
		{"reason not a string", spend(`{"amount":1,"reason":7}`), 400, "invalid_request"},
		{"spend unknown field", spend(`{"amount":1,"to":"bob"}`), 400, "invalid_request"},
		{"spend without key", req{method: "POST", path: "/v1/wallet/spend", auth: alice, body: `{"amount":1}`}, 400, "missing_idempotency_key"},
		// Queries.
		{"bad region", get("/v1/hunts/h1/leaderboard?region=u0a"), 400, "invalid_request"},
		{"region too long", get("/v1/hunts/h1/leaderboard?region=u09tu"), 400, "invalid_request"},
		{"bad after token", get("/v1/hunts/h1/leaderboard?after=abc"), 400, "bad_consistency_token"},
		{"after for no partition", get("/v1/hunts/h1/leaderboard?after=99999.1"), 400, "bad_consistency_token"},
		{"after seq zero", get("/v1/hunts/h1/leaderboard?after=1.0"), 400, "bad_consistency_token"},
		{"limit zero", get("/v1/hunts/h1/leaderboard?limit=0"), 400, "invalid_request"},
		{"limit too big", get("/v1/hunts/h1/leaderboard?limit=1001"), 400, "invalid_request"},
		{"limit not a number", get("/v1/hunts/h1/leaderboard?limit=ten"), 400, "invalid_request"},
		{"limit twice", get("/v1/hunts/h1/leaderboard?limit=1&limit=2"), 400, "invalid_request"},
		{"negative offset", get("/v1/hunts/h1/leaderboard?offset=-1"), 400, "invalid_request"},
		{"around=you", get("/v1/hunts/h1/leaderboard?around=you"), 400, "invalid_request"},
		{"around=me without token", req{method: "GET", path: "/v1/hunts/h1/leaderboard?around=me"}, 401, "unauthorized"},
		{"leaderboard of unknown hunt", get("/v1/hunts/nope/leaderboard"), 404, "unknown_hunt"},
		{"wallet bad after", get("/v1/wallet?after=1.x"), 400, "bad_consistency_token"},
		{"ledger limit too big", get("/v1/wallet/ledger?limit=100000"), 400, "invalid_request"},
		{"nearby NaN", get("/v1/hunts/h1/hotspots?lat=NaN&lon=2.35"), 400, "invalid_request"},
		{"nearby lat 100", get("/v1/hunts/h1/hotspots?lat=100&lon=2.35"), 400, "invalid_request"},
		{"nearby no lon", get("/v1/hunts/h1/hotspots?lat=48.85"), 400, "invalid_request"},
		{"nearby huge radius", get("/v1/hunts/h1/hotspots?lat=48.85&lon=2.35&radius_m=1e9"), 400, "invalid_request"},
		{"nearby limit zero", get("/v1/hunts/h1/hotspots?lat=48.85&lon=2.35&limit=0"), 400, "invalid_request"},
		{"events without token", req{method: "GET", path: "/v1/hunts/h1/events"}, 401, "unauthorized"},
		{"events of unknown hunt", get("/v1/hunts/nope/events"), 404, "unknown_hunt"},
		// Admin routes.
		{"player token on admin PUT", req{method: "PUT", path: "/v1/admin/hunts/h1", auth: alice, body: `{"name":"x"}`}, 401, "unauthorized"},
		{"player token on import", req{method: "POST", path: "/v1/admin/hunts/h1/hotspots", auth: alice, body: numSpot(8, 1).json()}, 401, "unauthorized"},
		{"player token on audit", req{method: "GET", path: "/v1/admin/audit", auth: alice}, 401, "unauthorized"},
		{"admin without token", req{method: "GET", path: "/v1/admin/hunts/h1"}, 401, "unauthorized"},
		{"hunt negative radius", req{method: "PUT", path: "/v1/admin/hunts/h1", auth: testAdmin, body: `{"claim_radius_m":-1}`}, 400, "invalid_request"},
		{"hunt ends before start", req{method: "PUT", path: "/v1/admin/hunts/h1", auth: testAdmin, body: `{"starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}`}, 400, "invalid_request"},
		{"hunt bad time", req{method: "PUT", path: "/v1/admin/hunts/h1", auth: testAdmin, body: `{"starts_at":"tomorrow"}`}, 400, "invalid_request"},
		{"hunt unknown field", req{method: "PUT", path: "/v1/admin/hunts/h1", auth: testAdmin, body: `{"name":"x","owner":"me"}`}, 400, "invalid_request"},
		{"hunt id mismatch", req{method: "PUT", path: "/v1/admin/hunts/h1", auth: testAdmin, body: `{"id":"h2"}`}, 400, "invalid_request"},
		{"import wrong types", importReq("application/x-ndjson", `{"id":"x","lat":"48.8","lon":2.35,"tickets":1}`), 400, "invalid_request"},
		{"import garbage line", importReq("application/x-ndjson", "hello\n"), 400, "malformed_json"},
		{"import missing tickets", importReq("application/x-ndjson", `{"id":"x","lat":48.8,"lon":2.35}`), 400, "invalid_request"},
		{"import negative tickets", importReq("", `[{"id":"x","lat":48.8,"lon":2.35,"tickets":-1}]`), 400, "invalid_request"},
		{"import NaN", importReq("", `[{"id":"x","lat":NaN,"lon":2.35,"tickets":1}]`), 400, "malformed_json"},
		{"import array trailing", importReq("", `[] []`), 400, "malformed_json"},
		{"import neither", importReq("", `"hotspots"`), 400, "malformed_json"},
		{"import empty", importReq("", ``), 400, "malformed_json"},
		{"import unterminated array", importReq("", `[{"id":"x","lat":48.8,"lon":2.3`), 400, "malformed_json"},
		{"import to unknown hunt", req{method: "POST", path: "/v1/admin/hunts/nope/hotspots", auth: testAdmin, body: numSpot(8, 1).json()}, 404, "unknown_hunt"},
		{"import oversized", bigImport, 413, "body_too_large"},
		{"audit not configured", req{method: "GET", path: "/v1/admin/audit", auth: testAdmin}, 404, "not_found"},
	}
	for name, tok := range badTokens(t) {
		cases = append(cases, struct {
			name   string
			r      req
			status int
			code   string
		}{"token: " + name, withToken(tok), 401, "unauthorized"})
	}
	if len(cases) < 30 {
		t.Fatalf("only %d bad-input cases; the acceptance wants at least 30", len(cases))
	}
	for _, c := range cases {
		r := e.do(c.r)
		m := checkProblem(t, c.name, r, c.status, c.code)
		if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", c.name)
		}
		if strings.HasPrefix(c.name, "import ") && c.status == 400 && m["imported"] != json.Number("0") {
			t.Errorf("%s: imported = %v; want 0 (the bad item is the first)", c.name, m["imported"])
		}
	}
	after := e.snapshot(alice)
	if before != after {
		t.Fatalf("state changed by bad input:\nbefore %+v\nafter  %+v", before, after)
	}
	// Nothing above was a claim the engine saw: a fresh claim is the
	// player's next grant, with the next sequence number of its partition.
	if r := e.claim(alice, "h1", numSpot(1, 5).id, e.key(), numSpot(1, 5).lat, numSpot(1, 5).lon); r.status != http.StatusCreated {
		t.Fatalf("claim after the bad input = %v; want 201", r)
	}
	if !strings.Contains(before.epochs, "partition/") || !strings.Contains(before.epochs, "leaderboard/") {
		t.Fatalf("consistency epochs %q; want the setup claim's partition and leaderboard", before.epochs)
	}
}
