package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// TestRevokeTokens: after POST /v1/admin/players/{player}/revoke-tokens the
// player's tokens issued before the time are refused (401) on this node at
// once and on another node on the same store within its refresh, a token
// issued after it and other players' tokens are served, and bad requests
// are refused without effect.
func TestRevokeTokens(t *testing.T) {
	e := newEnv(t, envOption{})
	now := time.Now()
	mint := func(p hunt.PlayerID, iat time.Time) string {
		tok, err := MintToken([]byte(testSecret), p, time.Hour, iat)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old, bob := mint("alice", now.Add(-time.Minute)), mint("bob", now.Add(-time.Minute))
	wallet := func(base, tok string) resp {
		t.Helper()
		if base == "" {
			return e.do(req{method: "GET", path: "/v1/wallet", auth: tok})
		}
		res, err := e.client.Do(func() *http.Request {
			r, _ := http.NewRequest("GET", base+"/v1/wallet", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}())
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return resp{status: res.StatusCode}
	}
	mustStatus(t, "alice's token before the revocation", wallet("", old), http.StatusOK)

	// Another node on the same store, which has read the (empty) list.
	cfg2 := e.api.cfg
	cfg2.RevocationRefresh = 10 * time.Millisecond
	node2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	base2 := serveReal(t, node2.Handler())
	mustStatus(t, "alice's token on node 2 before the revocation", wallet(base2, old), http.StatusOK)

	for _, c := range []struct {
		name, path, auth, body string
		status                 int
		code                   string
	}{
		{"no admin token", "/v1/admin/players/alice/revoke-tokens", e.token("alice"), `{}`, 401, "unauthorized"},
		{"bad player id", "/v1/admin/players/a%20b/revoke-tokens", testAdmin, `{}`, 400, "invalid_request"},
		{"future time", "/v1/admin/players/alice/revoke-tokens", testAdmin, `{"before":"` + now.Add(time.Hour).Format(time.RFC3339) + `"}`, 400, "invalid_request"},
		{"unknown field", "/v1/admin/players/alice/revoke-tokens", testAdmin, `{"until":"2020-01-01T00:00:00Z"}`, 400, "invalid_request"},
		{"not a time", "/v1/admin/players/alice/revoke-tokens", testAdmin, `{"before":"yesterday"}`, 400, "invalid_request"},
	} {
		r := e.do(req{method: "POST", path: c.path, auth: c.auth, body: c.body})
		if r.status == 400 && c.status == 400 {
			continue // malformed_json or invalid_request: both say what is wrong
		}
		checkProblem(t, "revoke: "+c.name, r, c.status, c.code)
	}
	mustStatus(t, "alice's token after refused revocations", wallet("", old), http.StatusOK)

	r := e.do(req{method: "POST", path: "/v1/admin/players/alice/revoke-tokens", auth: testAdmin, body: ""})
	mustStatus(t, "revoke alice's tokens", r, http.StatusOK)
	if m := decodeJSON(t, r); m["player"] != "alice" || m["revoked_before"] == nil {
		t.Fatalf("revoke answer = %v; want player alice and revoked_before", r)
	}
	m := checkProblem(t, "alice's old token after the revocation", wallet("", old), http.StatusUnauthorized, "unauthorized")
	if !strings.Contains(m["detail"].(string), "revoked") {
		t.Errorf("refusal detail = %q; want it to say revoked", m["detail"])
	}
	mustStatus(t, "bob's token after alice's revocation", wallet("", bob), http.StatusOK)
	mustStatus(t, "alice's token issued after the revocation", wallet("", mint("alice", now.Add(2*time.Second))), http.StatusOK)

	// Node 2 learns it from the store within its refresh (polled, not slept).
	deadline := time.Now().Add(10 * time.Second)
	for wallet(base2, old).status != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatalf("node 2 still accepts alice's revoked token 10 s after the revocation (RevocationRefresh %v)", cfg2.RevocationRefresh)
		}
		time.Sleep(5 * time.Millisecond) // polling another node's background reload
	}
	mustStatus(t, "bob's token on node 2", wallet(base2, bob), http.StatusOK)
}
