package main

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestTokenCommandLifetime: `cairn token` refuses to mint a token that a
// server would refuse for its lifetime (--ttl past --max-ttl, 30 days by
// default), and mints one with the issuer and audience asked for.
func TestTokenCommandLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	dir := t.TempDir()
	env := envWithout("CAIRN_SECRET=" + testSecret)
	for _, args := range [][]string{
		{"--ttl", "721h"},                  // the default maximum is 720h
		{"--ttl", "876000h"},               // 100 years
		{"--ttl", "2h", "--max-ttl", "1h"}, // a server run with --token-max-ttl 1h
		{"--ttl", "0s"},
	} {
		out, err := runCairn(t, dir, env, append([]string{"token", "--player", "p1"}, args...)...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "--token-max-ttl") {
			t.Errorf("cairn token %v = %v\n%s\nwant exit 1 naming --token-max-ttl", args, err, out)
		}
	}
	out, err := runCairn(t, dir, env, "token", "--player", "p1", "--ttl", "720h", "--issuer", "cairn-test", "--audience", "players")
	if err != nil {
		t.Fatalf("cairn token --ttl 720h = %v\n%s", err, out)
	}
	var claims jwt.RegisteredClaims
	if _, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"})).ParseWithClaims(strings.TrimSpace(out), &claims,
		func(*jwt.Token) (any, error) { return []byte(testSecret), nil }); err != nil {
		t.Fatalf("the minted token does not verify: %v", err)
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); claims.Issuer != "cairn-test" || len(claims.Audience) != 1 || claims.Audience[0] != "players" || life != 720*time.Hour {
		t.Errorf("minted claims iss %q aud %v lifetime %v; want cairn-test, [players], 720h", claims.Issuer, claims.Audience, life)
	}
}

// TestServeTokenFlags: serve's --token-issuer, --token-audience and
// --token-max-ttl decide which tokens minted by `cairn token` a client may
// use.
func TestServeTokenFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a real server; skipped with -short")
	}
	data := t.TempDir()
	p := startServe(t, cairnBinary(t), data, freeAddr(t), "--token-issuer", "cairn-test", "--token-audience", "players", "--token-max-ttl", "1h")
	defer p.kill()
	env := envWithout("CAIRN_SECRET=" + testSecret)
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--ttl", "30m", "--issuer", "cairn-test", "--audience", "players"}, 200},
		{[]string{"--ttl", "2h", "--max-ttl", "3h", "--issuer", "cairn-test", "--audience", "players"}, 401}, // past serve's 1h
		{[]string{"--ttl", "30m", "--audience", "players"}, 401},                                             // no iss
		{[]string{"--ttl", "30m", "--issuer", "cairn-test", "--audience", "admins"}, 401},
	} {
		out, err := runCairn(t, data, env, append([]string{"token", "--player", "p1"}, c.args...)...)
		if err != nil {
			t.Fatalf("cairn token %v = %v\n%s", c.args, err, out)
		}
		req, _ := http.NewRequest("GET", p.base+"/v1/wallet", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("GET /v1/wallet with cairn token %v = %d; want %d", c.args, res.StatusCode, c.want)
		}
	}
}
