package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestClientIP: X-Forwarded-For counts only from trusted peers, and only
// its right-most untrusted entry does.
func TestClientIP(t *testing.T) {
	proxies := mustPrefixes(t, "10.0.0.0/8", "::1/128")
	many := strings.TrimSuffix(strings.Repeat("10.0.0.9,", 40), ",")
	for _, c := range []struct {
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"1.2.3.4:5", []string{"9.9.9.9"}, nil, "1.2.3.4"},                            // no proxy configured: XFF ignored
		{"1.2.3.4:5", []string{"9.9.9.9"}, proxies, "1.2.3.4"},                        // peer not a proxy: XFF ignored
		{"10.1.1.1:5", nil, proxies, "10.1.1.1"},                                      // a proxy's own request
		{"10.1.1.1:5", []string{"9.9.9.9"}, proxies, "9.9.9.9"},                       // one hop
		{"10.1.1.1:5", []string{"6.6.6.6, 9.9.9.9"}, proxies, "9.9.9.9"},              // the client's own entry is ignored
		{"10.1.1.1:5", []string{"9.9.9.9 , 10.2.2.2"}, proxies, "9.9.9.9"},            // two proxies
		{"10.1.1.1:5", []string{"6.6.6.6", "9.9.9.9,10.2.2.2"}, proxies, "9.9.9.9"},   // repeated headers
		{"10.1.1.1:5", []string{"9.9.9.9, garbage"}, proxies, "10.1.1.1"},             // a trusted hop wrote garbage
		{"10.1.1.1:5", []string{"9.9.9.9, 10.2.2.2, garbage"}, proxies, "10.1.1.1"},   // garbage right of it too
		{"10.1.1.1:5", []string{"10.3.3.3"}, proxies, "10.3.3.3"},                     // every hop trusted
		{"10.1.1.1:5", []string{"9.9.9.9," + many}, proxies, "10.0.0.9"},              // too many hops: the last examined
		{"10.1.1.1:5", []string{",, ,9.9.9.9,"}, proxies, "9.9.9.9"},                  // empty entries skipped
		{"[::1]:80", []string{"2001:db8::7"}, proxies, "2001:db8::7"},                 // IPv6
		{"[::ffff:10.0.0.1]:80", []string{"9.9.9.9"}, proxies, "9.9.9.9"},             // IPv4-mapped peer
		{"10.1.1.1:5", []string{"::ffff:9.9.9.9"}, proxies, "9.9.9.9"},                // IPv4-mapped entry
		{"[fe80::1%eth0]:80", nil, mustPrefixes(t, "fe80::/10"), "fe80::1"},           // zone dropped
		{"not-an-address", []string{"9.9.9.9"}, proxies, "invalid IP"},                // unparsable peer
		{"10.1.1.1:5", []string{"9.9.9.9%eth0"}, proxies, "10.1.1.1"},                 // IPv4 has no zones: garbage
		{"10.1.1.1:5", []string{"1.1.1.1:80"}, proxies, "10.1.1.1"},                   // host:port is not an address
		{"10.1.1.1:5", []string{"[2001:db8::1]"}, proxies, "10.1.1.1"},                // brackets are not either
		{"10.1.1.1:5", []string{"9.9.9.9, 10.2.2.2, 8.8.8.8"}, proxies, "8.8.8.8"},    // right-most untrusted wins
		{"127.0.0.1:5", []string{"9.9.9.9"}, mustPrefixes(t, "0.0.0.0/0"), "9.9.9.9"}, // trust everything
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != nil {
			r.Header["X-Forwarded-For"] = c.xff
		}
		if got := clientIP(r, c.trusted).String(); got != c.want {
			t.Errorf("clientIP(%s, XFF %q, trusted %v) = %s; want %s", c.remote, c.xff, c.trusted, got, c.want)
		}
	}
}

// FuzzClientIP: never panics; without a trusted peer the answer is the
// peer; with one, it is the peer or an address written in the header.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"9.9.9.9", "6.6.6.6, 9.9.9.9", "9.9.9.9, garbage", ",,", "2001:db8::1, 10.0.0.1", "::ffff:1.2.3.4", "fe80::1%x"} {
		f.Add("10.1.1.1:80", s)
		f.Add("1.2.3.4:80", s)
	}
	trusted := mustPrefixes(f, "10.0.0.0/8", "2001:db8::/32")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header["X-Forwarded-For"] = []string{xff}
		got := clientIP(r, trusted)
		peer := peerAddr(remote)
		if !isTrusted(peer, trusted) {
			if got != peer {
				t.Fatalf("clientIP(%q, %q) = %v; want the untrusted peer %v", remote, xff, got, peer)
			}
			return
		}
		if got == peer {
			return
		}
		for _, e := range strings.Split(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(e)); err == nil && a.WithZone("").Unmap() == got {
				return
			}
		}
		t.Fatalf("clientIP(%q, %q) = %v: neither the peer nor an entry of the header", remote, xff, got)
	})
}

// TestIPKey: IPv6 clients are limited per /64, IPv4 per address.
func TestIPKey(t *testing.T) {
	k := func(s string) string { return ipKey(netip.MustParseAddr(s)) }
	if k("2001:db8:1:2::1") != k("2001:db8:1:2:ffff::9") {
		t.Errorf("ipKey: two addresses of one /64 have different keys")
	}
	if k("2001:db8:1:2::1") == k("2001:db8:1:3::1") {
		t.Errorf("ipKey: two /64s share a key")
	}
	if k("192.0.2.1") == k("192.0.2.2") {
		t.Errorf("ipKey: two IPv4 addresses share a key")
	}
}

// TestLimitConfig: the player limit is on and the IP limit off by default;
// bad values are all reported.
func TestLimitConfig(t *testing.T) {
	e := newEnv(t, envOption{})
	c := Config{Engine: e.eng, Board: e.board, Secret: []byte(testSecret), AdminToken: testAdmin}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if c.ClaimRate != ClaimRateDefault || c.ClaimBurst != ClaimBurstDefault || c.IPRate != 0 || c.LimitKeysMax != LimitKeysMaxDefault {
		t.Fatalf("defaults: ClaimRate %v ClaimBurst %d IPRate %v LimitKeysMax %d; want %v %d 0 %d",
			c.ClaimRate, c.ClaimBurst, c.IPRate, c.LimitKeysMax, ClaimRateDefault, ClaimBurstDefault, LimitKeysMaxDefault)
	}
	s, err := New(c)
	if err != nil || s.playerLimit == nil || s.ipLimit != nil {
		t.Fatalf("New(defaults): player limit %v, IP limit %v, %v; want on, off", s.playerLimit, s.ipLimit, err)
	}
	c = Config{Engine: e.eng, Board: e.board, Secret: []byte(testSecret), AdminToken: testAdmin, IPRate: 2.5}
	if err := c.Validate(); err != nil || c.IPBurst != 5 {
		t.Fatalf("Validate(IPRate 2.5) = %v, IPBurst %d; want nil, 5", err, c.IPBurst)
	}
	bad := Config{Engine: e.eng, Board: e.board, Secret: []byte(testSecret), AdminToken: testAdmin,
		ClaimRate: -2, ClaimBurst: -1, IPRate: math.NaN(), IPBurst: -1, LimitKeysMax: -1}
	err = bad.Validate()
	for _, name := range []string{"ClaimRate", "ClaimBurst", "IPRate", "IPBurst", "LimitKeysMax"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate(bad limits) = %v; want it to name %s", err, name)
		}
	}
	off := Config{Engine: e.eng, Board: e.board, Secret: []byte(testSecret), AdminToken: testAdmin, ClaimRate: LimitOff}
	if s, err := New(off); err != nil || s.playerLimit != nil {
		t.Fatalf("New(ClaimRate: LimitOff): player limit %v, %v; want off", s.playerLimit, err)
	}
}

// checkRateLimited fails unless r is a 429 rate_limited problem whose
// Retry-After is a whole number of seconds in [lo, hi].
func checkRateLimited(t testing.TB, what string, r resp, lo, hi int) {
	t.Helper()
	checkProblem(t, what, r, http.StatusTooManyRequests, "rate_limited")
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < lo || ra > hi {
		t.Fatalf("%s: Retry-After %q; want whole seconds in [%d, %d]", what, r.header.Get("Retry-After"), lo, hi)
	}
}

// TestPlayerLimit: over HTTP, a player's claims and spends share one
// bucket; the refusal is 429 rate_limited with Retry-After; other players
// and bad tokens are unaffected (a bad token is 401, not 429).
func TestPlayerLimit(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.ClaimRate, c.ClaimBurst = 0.25, 2 }}) // a token per 4 s
	spots := []spot{numSpot(0, 5), numSpot(1, 5), numSpot(2, 5)}
	e.basicHunt(spots...)
	alice, bob := e.token("alice"), e.token("bob")
	mustStatus(t, "alice's claim 1", e.claim(alice, "h1", "s0", e.key(), spots[0].lat, spots[0].lon), http.StatusCreated)
	mustStatus(t, "alice's claim 2", e.claim(alice, "h1", "s1", e.key(), spots[1].lat, spots[1].lon), http.StatusCreated)
	checkRateLimited(t, "alice's claim 3", e.claim(alice, "h1", "s2", e.key(), spots[2].lat, spots[2].lon), 1, 4)
	spend := e.do(req{method: "POST", path: "/v1/wallet/spend", auth: alice, header: map[string]string{"Idempotency-Key": e.key()}, body: `{"amount":1}`})
	checkRateLimited(t, "alice's spend", spend, 1, 4)
	mustStatus(t, "bob's claim", e.claim(bob, "h1", "s2", e.key(), spots[2].lat, spots[2].lon), http.StatusCreated)
	checkProblem(t, "a bad token's claim", e.claim("not-a-token", "h1", "s2", e.key(), spots[2].lat, spots[2].lon), http.StatusUnauthorized, "unauthorized")
	if got := e.wallet(alice); got != spots[0].reward+spots[1].reward {
		t.Fatalf("alice's wallet = %d; want %d (the two granted claims, nothing from the refused ones)", got, spots[0].reward+spots[1].reward)
	}
}

// stubLimiter is a Limiter that records its keys and answers as told.
type stubLimiter struct {
	mu   sync.Mutex
	keys []string
	ok   bool
	wait time.Duration
	err  error
}

func (l *stubLimiter) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, key)
	return l.ok, l.wait, l.err
}

// TestPlayerLimiterPlugIn: a Config.PlayerLimiter (the shape of a limiter
// shared across nodes) is asked with the player id, its wait becomes
// Retry-After rounded up, and its failure lets requests through.
func TestPlayerLimiterPlugIn(t *testing.T) {
	stub := &stubLimiter{wait: 2500 * time.Millisecond}
	e := newEnv(t, envOption{api: func(c *Config) { c.PlayerLimiter = stub }})
	s := numSpot(0, 5)
	e.basicHunt(s)
	alice := e.token("alice")
	checkRateLimited(t, "refused claim", e.claim(alice, "h1", "s0", e.key(), s.lat, s.lon), 3, 3)
	stub.mu.Lock()
	stub.err = errors.New("redis: connection refused")
	stub.mu.Unlock()
	mustStatus(t, "claim while the limiter fails", e.claim(alice, "h1", "s0", e.key(), s.lat, s.lon), http.StatusCreated)
	stub.mu.Lock()
	defer stub.mu.Unlock()
	if len(stub.keys) != 2 || stub.keys[0] != "alice" || stub.keys[1] != "alice" {
		t.Fatalf("limiter keys = %q; want [alice alice]", stub.keys)
	}
}

// TestIPLimit: when configured, each client address has its own bucket,
// X-Forwarded-For counts only from a trusted proxy, and the probes are
// never limited.
func TestIPLimit(t *testing.T) {
	get := func(e *testEnv, path, xff string) resp {
		h := map[string]string{}
		if xff != "" {
			h["X-Forwarded-For"] = xff
		}
		return e.do(req{method: "GET", path: path, header: h})
	}
	t.Run("behind a trusted proxy", func(t *testing.T) {
		e := newEnv(t, envOption{api: func(c *Config) {
			c.IPRate, c.IPBurst, c.TrustedProxies = 0.25, 2, mustPrefixes(t, "127.0.0.0/8")
		}})
		for i := 0; i < 2; i++ {
			mustStatus(t, "client A", get(e, "/v1/consistency", "198.51.100.7"), http.StatusOK)
		}
		checkRateLimited(t, "client A's third request", get(e, "/v1/consistency", "198.51.100.7"), 1, 4)
		checkRateLimited(t, "client A spoofing a left entry", get(e, "/v1/consistency", "203.0.113.1, 198.51.100.7"), 1, 4)
		mustStatus(t, "client B", get(e, "/v1/consistency", "198.51.100.8"), http.StatusOK)
		for i := 0; i < 20; i++ {
			mustStatus(t, "healthz", get(e, "/healthz", "198.51.100.7"), http.StatusOK)
			mustStatus(t, "readyz", get(e, "/readyz", "198.51.100.7"), http.StatusOK)
		}
	})
	t.Run("no trusted proxy", func(t *testing.T) {
		e := newEnv(t, envOption{api: func(c *Config) { c.IPRate, c.IPBurst = 0.25, 2 }})
		mustStatus(t, "first", get(e, "/v1/consistency", "198.51.100.1"), http.StatusOK)
		mustStatus(t, "second", get(e, "/v1/consistency", "198.51.100.2"), http.StatusOK)
		// Every request comes from 127.0.0.1; the header is not believed.
		checkRateLimited(t, "third, another X-Forwarded-For", get(e, "/v1/consistency", "198.51.100.3"), 1, 4)
	})
	t.Run("off by default", func(t *testing.T) {
		e := newEnv(t, envOption{})
		for i := 0; i < 50; i++ {
			mustStatus(t, "request", get(e, "/v1/consistency", ""), http.StatusOK)
		}
	})
}

// TestAdminSeparate: with AdminSeparate the public handler does not know
// the admin routes, and the admin handler serves only them and the probes.
func TestAdminSeparate(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.AdminSeparate = true }})
	if e.api.AdminHandler() == nil {
		t.Fatalf("AdminHandler() = nil with AdminSeparate")
	}
	checkProblem(t, "PUT hunt on the public listener",
		e.do(req{method: "PUT", path: "/v1/admin/hunts/h1", auth: testAdmin, body: `{"name":"x"}`}), http.StatusNotFound, "not_found")
	checkProblem(t, "audit on the public listener",
		e.do(req{method: "GET", path: "/v1/admin/audit", auth: testAdmin}), http.StatusNotFound, "not_found")

	base := serveReal(t, e.api.AdminHandler()) // the same server, another listener
	do := func(method, path, auth, body string) resp {
		hr, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if auth != "" {
			hr.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := e.client.Do(hr)
		if err != nil {
			t.Fatalf("%s %s on the admin listener: %v", method, path, err)
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
	}
	if r := do("PUT", "/v1/admin/hunts/h1", testAdmin, `{"name":"x"}`); r.status != http.StatusCreated {
		t.Fatalf("PUT hunt on the admin listener = %v; want 201", r)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/consistency"} {
		if r := do("GET", path, "", ""); r.status != http.StatusOK {
			t.Fatalf("GET %s on the admin listener = %v; want 200", path, r)
		}
	}
	// The node's internals are the operator's: not on the public listener.
	for _, path := range []string{"/metrics", "/v1/consistency"} {
		checkProblem(t, "GET "+path+" on the public listener", e.do(req{method: "GET", path: path}), http.StatusNotFound, "not_found")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		mustStatus(t, "GET "+path+" on the public listener", e.do(req{method: "GET", path: path}), http.StatusOK)
	}
	checkProblem(t, "wallet on the admin listener", do("GET", "/v1/wallet", e.token("alice"), ""), http.StatusNotFound, "not_found")
	mustStatus(t, "the hunt on the public listener", e.do(req{method: "GET", path: "/v1/hunts/h1", auth: e.token("alice")}), http.StatusOK)
}

// TestReadRateLimit: a player's reads past ReadBurst are refused 429
// rate_limited with Retry-After, another player's are not, and the public
// leaderboard without a token is not a player's read.
func TestReadRateLimit(t *testing.T) {
	e := newEnv(t, envOption{api: func(c *Config) { c.ReadRate, c.ReadBurst = 0.001, 3 }})
	e.basicHunt(numSpot(0, 1))
	scraper := e.token("scraper")
	paths := []string{"/v1/wallet", "/v1/hunts/h1/hotspots?lat=48.85&lon=2.35", "/v1/hunts/h1"}
	for _, p := range paths {
		mustStatus(t, "read within the burst "+p, e.do(req{method: "GET", path: p, auth: scraper}), http.StatusOK)
	}
	for _, p := range append(paths, "/v1/wallet/ledger", "/v1/hunts/h1/leaderboard", "/v1/hunts/h1/events") {
		r := e.do(req{method: "GET", path: p, auth: scraper})
		checkProblem(t, "read past the burst "+p, r, http.StatusTooManyRequests, "rate_limited")
		if r.header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After")
		}
	}
	mustStatus(t, "another player's read", e.do(req{method: "GET", path: "/v1/wallet", auth: e.token("other")}), http.StatusOK)
	mustStatus(t, "the public leaderboard", e.do(req{method: "GET", path: "/v1/hunts/h1/leaderboard"}), http.StatusOK)
	s := numSpot(0, 1)
	mustStatus(t, "a claim of the rate-limited reader", e.claim(scraper, "h1", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
}
