package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cairnhq/cairn/internal/hunt"
)

// signed signs claims with method and key.
func signed(t testing.TB, method jwt.SigningMethod, claims jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing a test token: %v", err)
	}
	return s
}

func claimsFor(sub string, exp time.Time) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(exp)}
}

// confusedToken is the algorithm-confusion attack: a header that says RS256
// over a valid HMAC-SHA256 signature with the server's secret. Only the
// algorithm allow-list stops it.
func confusedToken(t testing.TB, sub string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(`{"sub":"` + sub + `","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`))
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(head + "." + body))
	return head + "." + body + "." + enc.EncodeToString(mac.Sum(nil))
}

// badTokens are refused player tokens, by name.
func badTokens(t testing.TB) map[string]string {
	hour := time.Now().Add(time.Hour)
	expired, err := MintToken([]byte(testSecret), "alice", time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	wrongKey, err := MintToken([]byte("another-secret-0123456789abcdef-xyz"), "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	return map[string]string{
		"garbage":        "not.a.jwt",
		"empty segments": "..",
		"expired":        expired,
		"wrong secret":   wrongKey,
		"alg none":       signed(t, jwt.SigningMethodNone, claimsFor("alice", hour), jwt.UnsafeAllowNoneSignatureType),
		"RS256 header":   confusedToken(t, "alice"),
		"HS512":          signed(t, jwt.SigningMethodHS512, claimsFor("alice", hour), []byte(testSecret)),
		"no exp":         signed(t, jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice"}, []byte(testSecret)),
		"bad sub":        signed(t, jwt.SigningMethodHS256, claimsFor("bad id!", hour), []byte(testSecret)),
		"no sub":         signed(t, jwt.SigningMethodHS256, claimsFor("", hour), []byte(testSecret)),
		"admin token":    testAdmin,
		"too long":       strings.Repeat("a", TokenLenMax+1),
	}
}

// TestPlayerTokenRules checks the authenticator alone: every bad token is
// refused, a good one gives its subject, and iss/aud are enforced when configured.
func TestPlayerTokenRules(t *testing.T) {
	now := time.Now()
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", time.Now)
	check := func(a *authenticator, tok string) (string, error) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		p, err := a.player(r)
		return string(p), err
	}
	good, err := MintToken([]byte(testSecret), "alice", time.Hour, now)
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	if p, err := check(a, good); err != nil || p != "alice" {
		t.Fatalf("player(good token) = %q, %v; want alice, nil", p, err)
	}
	for name, tok := range badTokens(t) {
		if p, err := check(a, tok); err == nil {
			t.Errorf("player(%s token) = %q, nil; want an error", name, p)
		} else if _, ok := classify(err); !ok || !errIsUnauthorized(err) {
			t.Errorf("player(%s token) error %v; want errUnauthorized", name, err)
		}
	}
	r, _ := http.NewRequest("GET", "/", nil)
	if _, err := a.player(r); !errIsUnauthorized(err) {
		t.Errorf("player(no header) = %v; want errUnauthorized", err)
	}
	r.Header.Set("Authorization", "Basic YWxpY2U6eA==")
	if _, err := a.player(r); !errIsUnauthorized(err) {
		t.Errorf("player(Basic) = %v; want errUnauthorized", err)
	}
	r.Header.Set("Authorization", "bearer "+good) // the scheme is case-insensitive
	if p, err := a.player(r); err != nil || p != "alice" {
		t.Errorf("player(lower-case scheme) = %q, %v; want alice", p, err)
	}

	strict := newAuthenticator([]byte(testSecret), testAdmin, "cairn-test", "players", time.Now)
	if _, err := check(strict, good); err == nil {
		t.Errorf("player(token without iss/aud) accepted by a server that requires them")
	}
	withBoth, _ := MintTokenFor([]byte(testSecret), "alice", time.Hour, now, "cairn-test", "players")
	if p, err := check(strict, withBoth); err != nil || p != "alice" {
		t.Errorf("player(iss+aud token) = %q, %v; want alice", p, err)
	}
	wrongAud, _ := MintTokenFor([]byte(testSecret), "alice", time.Hour, now, "cairn-test", "admins")
	if _, err := check(strict, wrongAud); err == nil {
		t.Errorf("player(wrong aud) accepted")
	}
	// The clock is the configured one: a token valid now is expired in two hours.
	later := newAuthenticator([]byte(testSecret), testAdmin, "", "", func() time.Time { return now.Add(2 * time.Hour) })
	if _, err := check(later, good); err == nil {
		t.Errorf("player(token) accepted two hours after it expired")
	}
}

func errIsUnauthorized(err error) bool {
	p, _ := classify(err)
	return p.code == "unauthorized"
}

// TestAdminToken checks the admin comparison.
func TestAdminToken(t *testing.T) {
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", time.Now)
	player, _ := MintToken([]byte(testSecret), "alice", time.Hour, time.Now())
	for _, c := range []struct {
		header string
		ok     bool
	}{
		{"Bearer " + testAdmin, true},
		{"", false},
		{"Bearer ", false},
		{"Bearer " + testAdmin + "x", false},
		{"Bearer " + testAdmin[:len(testAdmin)-1], false},
		{"Bearer " + player, false},
		{"Basic " + testAdmin, false},
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if err := a.admin(r); (err == nil) != c.ok {
			t.Errorf("admin(%q) = %v; want ok %v", c.header, err, c.ok)
		}
	}
}

// TestMintTokenRefuses checks MintToken's own validation.
func TestMintTokenRefuses(t *testing.T) {
	for _, c := range []struct {
		secret string
		player hunt.PlayerID
		ttl    time.Duration
	}{
		{"short", "alice", time.Hour},
		{testSecret, "bad id", time.Hour},
		{testSecret, "", time.Hour},
		{testSecret, "alice", 0},
		{testSecret, "alice", -time.Second},
	} {
		if tok, err := MintToken([]byte(c.secret), c.player, c.ttl, time.Now()); err == nil {
			t.Errorf("MintToken(%q, %q, %v) = %q; want an error", c.secret, c.player, c.ttl, tok)
		}
	}
}

// TestTokenCache: a cached token still expires on time, a token that fails
// is never cached, and the cache stays bounded.
func TestTokenCache(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", func() time.Time { return time.Unix(0, now.Load()) })
	tok, _ := MintToken([]byte(testSecret), "alice", time.Hour, time.Unix(0, now.Load()))
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i < 2; i++ { // a parse, then a hit
		if p, err := a.player(r); err != nil || p != "alice" {
			t.Fatalf("player(token) call %d = %q, %v; want alice", i, p, err)
		}
	}
	if _, ok := a.cache.get(tok); !ok {
		t.Fatalf("a verified token is not cached")
	}
	now.Add(int64(time.Hour))
	if _, err := a.player(r); !errIsUnauthorized(err) {
		t.Fatalf("player(cached token) at its expiry = %v; want errUnauthorized", err)
	}
	bad := badTokens(t)["wrong secret"]
	r.Header.Set("Authorization", "Bearer "+bad)
	_, _ = a.player(r)
	if _, ok := a.cache.get(bad); ok {
		t.Fatalf("a refused token was cached")
	}
	for i := 0; i < 3*tokenCacheLenMax; i++ {
		a.cache.put("token-"+strconv.Itoa(i), cachedToken{player: "p"})
	}
	total := 0
	for i := range a.cache.shards {
		total += len(a.cache.shards[i].m)
	}
	if total > tokenCacheLenMax {
		t.Fatalf("token cache holds %d entries; the bound is %d", total, tokenCacheLenMax)
	}
}

// TestTokenRulesHTTP: a client's token is refused (401) when it lives
// longer than TokenTTLMax, or lacks the configured issuer or audience; one
// within the rules is served.
func TestTokenRulesHTTP(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.Issuer, c.Audience, c.TokenTTLMax = "cairn-test", "players", 30*24*time.Hour }})
	now := time.Now()
	mint := func(ttl time.Duration, iss, aud string) string {
		tok, err := MintTokenFor([]byte(testSecret), "alice", ttl, now, iss, aud)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, c := range []struct {
		name string
		tok  string
		want int
	}{
		{"30 days, iss and aud", mint(30*24*time.Hour, "cairn-test", "players"), http.StatusOK},
		{"1 hour, iss and aud", mint(time.Hour, "cairn-test", "players"), http.StatusOK},
		{"31 days", mint(31*24*time.Hour, "cairn-test", "players"), http.StatusUnauthorized},
		{"100 years", mint(100*365*24*time.Hour, "cairn-test", "players"), http.StatusUnauthorized},
		{"no iss", mint(time.Hour, "", "players"), http.StatusUnauthorized},
		{"wrong aud", mint(time.Hour, "cairn-test", "admins"), http.StatusUnauthorized},
	} {
		r := e.do(req{method: "GET", path: "/v1/wallet", auth: c.tok})
		if r.status != c.want {
			t.Errorf("GET /v1/wallet with a token (%s) = %v; want %d", c.name, r, c.want)
		}
		if c.want == http.StatusUnauthorized {
			checkProblem(t, c.name, r, http.StatusUnauthorized, "unauthorized")
		}
	}
	if r := e.do(req{method: "GET", path: "/v1/wallet", auth: mint(100*365*24*time.Hour, "cairn-test", "players")}); !strings.Contains(string(r.body), "lifetime") {
		t.Errorf("a 100-year token's refusal = %v; want the detail to name its lifetime", r)
	}
}

// TestVerifyFastAgreesWithParser: the fast path accepts exactly the tokens
// of its shape that the parser accepts, with the same claims, and refuses
// every bad token (the parser then gives the reason).
func TestVerifyFastAgreesWithParser(t *testing.T) {
	now := time.Now()
	hour := now.Add(time.Hour)
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", time.Now)
	strict := newAuthenticator([]byte(testSecret), testAdmin, "cairn-test", "players", time.Now)
	good, _ := MintToken([]byte(testSecret), "alice", time.Hour, now)
	withBoth, _ := MintTokenFor([]byte(testSecret), "alice", time.Hour, now, "cairn-test", "players")
	wrongAud, _ := MintTokenFor([]byte(testSecret), "alice", time.Hour, now, "cairn-test", "admins")
	enc := base64.RawURLEncoding
	sign := func(head, body string) string {
		h, b := enc.EncodeToString([]byte(head)), enc.EncodeToString([]byte(body))
		mac := hmac.New(sha256.New, []byte(testSecret))
		mac.Write([]byte(h + "." + b))
		return h + "." + b + "." + enc.EncodeToString(mac.Sum(nil))
	}
	exp := strconv.FormatInt(hour.Unix(), 10)
	toks := badTokens(t)
	toks["good"] = good
	toks["iss+aud"] = withBoth
	toks["wrong aud"] = wrongAud
	toks["typ first"] = sign(`{"typ":"JWT","alg":"HS256"}`, `{"sub":"bob","exp":`+exp+`}`)
	toks["no typ"] = sign(`{"alg":"HS256"}`, `{"sub":"bob","exp":`+exp+`}`)
	toks["kid header"] = sign(`{"alg":"HS256","kid":"k1","typ":"JWT"}`, `{"sub":"bob","exp":`+exp+`}`)
	toks["not yet valid"] = sign(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"bob","exp":`+exp+`,"nbf":`+exp+`}`)
	toks["exp a string"] = sign(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"bob","exp":"`+exp+`"}`)
	toks["claims null"] = sign(`{"alg":"HS256","typ":"JWT"}`, `null`)
	toks["trailing claims"] = sign(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"bob","exp":`+exp+`} {}`)
	toks["truncated signature"] = good[:len(good)-2]
	toks["four segments"] = good + ".x"
	fast := map[string]bool{}
	for _, au := range []*authenticator{a, strict} {
		for name, tok := range toks {
			var fc, pc jwt.RegisteredClaims
			fastOK := au.verifyFast(tok, &fc)
			_, err := au.parser.ParseWithClaims(tok, &pc, au.keyfunc)
			if fastOK && err != nil {
				t.Errorf("%s: verifyFast accepted a token the parser refuses (%v)", name, err)
			}
			if fastOK && (fc.Subject != pc.Subject || !fc.ExpiresAt.Equal(pc.ExpiresAt.Time)) {
				t.Errorf("%s: verifyFast claims %+v; the parser's %+v", name, fc, pc)
			}
			if fastOK {
				fast[name+map[bool]string{true: " (strict)", false: ""}[au == strict]] = true
			}
		}
	}
	// The fast path is taken for valid tokens of its shape (sub is checked by player afterwards).
	named := func(name string) string {
		if _, ok := toks[strings.TrimSuffix(name, " (strict)")]; !ok {
			t.Fatalf("no token named %q: the list below names a token the test does not make", name)
		}
		return name
	}
	for _, name := range []string{"good", "typ first", "no typ", "iss+aud", "bad sub", "iss+aud (strict)"} {
		if !fast[named(name)] {
			t.Errorf("verifyFast refused the %s token; the parser accepts it", name)
		}
	}
	for _, name := range []string{"kid header", "trailing claims", "good (strict)", "wrong aud (strict)", "RS256 header",
		"expired", "wrong secret", "not yet valid", "claims null"} {
		if fast[named(name)] {
			t.Errorf("verifyFast accepted the %s token", name)
		}
	}
}
