package httpapi

// Abuse and overload tests, and the fuzz targets of
// the remaining decoders of outside input: the Idempotency-Key header, the
// consistency token and the query strings. Figures measured here are logged
// (t.Logf) and recorded in docs/FAULTS.md; only the documented bounds are asserted.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/hunt"
)

func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// serveReal serves h with NewHTTPServer's settings on 127.0.0.1:0 and
// returns its base URL.
func serveReal(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := listenLoopback(t)
	hs := NewHTTPServer(ln.Addr().String(), h)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// TestOnePlayerBurst300 is the abuse acceptance test: one player fires 300
// claims at once (300 hotspots, 300 keys) at a server with the default
// per-player limit. Some are answered 429 rate_limited with Retry-After,
// none 5xx; no more are granted than the bucket allows; the wallet equals
// the rewards of the grants; and a refused claim recorded nothing: retried
// once the bucket refills, it is decided afresh (not a replay).
func TestOnePlayerBurst300(t *testing.T) {
	const claims = 300
	e := newEnv(t, envOption{conns: claims, api: func(c *Config) { c.ClaimRate, c.ClaimBurst = 0, 0 }}) // the defaults
	spots := make([]spot, claims)
	for i := range spots {
		spots[i] = numSpot(i, 1)
	}
	e.basicHunt(spots...)
	tok := e.token("scripter")

	type answer struct {
		r   resp
		key string
	}
	answers := make([]answer, claims)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "burst-" + strconv.Itoa(i)
			<-start
			answers[i] = answer{e.claim(tok, "h1", spots[i].id, key, spots[i].lat, spots[i].lon), key}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)

	var granted, limited int
	var rewards int64
	firstLimited := -1
	for i, a := range answers {
		switch a.r.status {
		case http.StatusCreated:
			granted++
			var b struct{ Reward int64 }
			if err := json.Unmarshal(a.r.body, &b); err != nil {
				t.Fatalf("claim %d = %v: %v", i, a.r, err)
			}
			rewards += b.Reward
		case http.StatusTooManyRequests:
			limited++
			checkRateLimited(t, fmt.Sprintf("claim %d", i), a.r, 1, 1) // a token is at most 1/5 s away
			if firstLimited < 0 {
				firstLimited = i
			}
		default:
			t.Fatalf("claim %d = %v; want 201 or 429 rate_limited (never 5xx)", i, a.r)
		}
	}
	// The bucket holds ClaimBurstDefault and refills ClaimRateDefault per
	// second: nothing can have been granted beyond that in elapsed.
	allowedMax := ClaimBurstDefault + int(ClaimRateDefault*elapsed.Seconds()) + 1
	if limited == 0 || granted < ClaimBurstDefault || granted > allowedMax {
		t.Fatalf("300 claims in %v: %d granted, %d rate limited; want some limited and %d..%d granted",
			elapsed, granted, limited, ClaimBurstDefault, allowedMax)
	}
	if got := e.wallet(tok); got != rewards {
		t.Fatalf("wallet = %d; want %d, the rewards of the %d grants", got, rewards, granted)
	}
	// The refused claim recorded nothing: once a token is back it is decided now.
	a := answers[firstLimited]
	var r resp
	waitFor(t, "the bucket to refill", func() bool {
		r = e.claim(tok, "h1", spots[firstLimited].id, a.key, spots[firstLimited].lat, spots[firstLimited].lon)
		return r.status != http.StatusTooManyRequests
	})
	if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry of refused claim %d = %v (replayed %q); want a fresh 201", firstLimited, r, r.header.Get("Idempotent-Replayed"))
	}
	t.Logf("one player, %d claims at once: %d granted, %d answered 429 rate_limited, in %v", claims, granted, limited, elapsed)
}

// TestSlowloris is the slow-client acceptance test: 300 connections that
// trickle a request header one byte every 2 s are all closed by the server
// (ReadHeaderTimeout) within 15 s, while /healthz keeps answering on a
// real NewHTTPServer. The close time and /healthz latency are measured and
// logged, not asserted beyond the 15 s (plus scheduling slack).
func TestSlowloris(t *testing.T) {
	const (
		conns        = 300
		trickleEvery = 2 * time.Second
		closeBound   = 15 * time.Second // the acceptance
		slack        = 5 * time.Second  // a shared 2-core machine under -race
	)
	e := newEnv(t, envOption{})
	base := serveReal(t, e.api.Handler())
	addr := strings.TrimPrefix(base, "http://")
	request := []byte("GET /healthz HTTP/1.1\r\nHost: cairn\r\nX-Padding: " + strings.Repeat("a", 100) + "\r\n\r\n")

	type slow struct {
		c        net.Conn
		opened   time.Time
		closedAt atomic.Int64 // unix ns; 0 while open
	}
	all := make([]*slow, conns)
	var wg sync.WaitGroup
	for i := range all {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		s := &slow{c: c, opened: time.Now()}
		all[i] = s
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(request[:1]); err != nil {
			t.Fatalf("conn %d: first byte: %v", i, err)
		}
		wg.Add(1)
		go func() { // notices the server closing the connection
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
			s.closedAt.Store(time.Now().UnixNano())
		}()
	}
	allClosed := make(chan struct{})
	go func() { wg.Wait(); close(allClosed) }()

	// /healthz from a well-behaved client, all along.
	hc := &http.Client{Timeout: 10 * time.Second}
	var probes, probeFails atomic.Int64
	var probeMax atomic.Int64
	stopProbe := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopProbe:
				return
			case <-tick.C:
			}
			began := time.Now()
			res, err := hc.Get(base + "/healthz")
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			if err != nil || res.StatusCode != http.StatusOK {
				probeFails.Add(1)
				continue
			}
			probes.Add(1)
			if d := int64(time.Since(began)); d > probeMax.Load() {
				probeMax.Store(d)
			}
		}
	}()

	// The trickle: one more header byte on every open connection every 2 s.
	tick := time.NewTicker(trickleEvery)
	defer tick.Stop()
	deadline := time.NewTimer(closeBound + slack)
	defer deadline.Stop()
	sent := 1
wait:
	for {
		select {
		case <-allClosed:
			break wait
		case <-deadline.C:
			break wait
		case <-tick.C:
			if sent < len(request)-1 { // never complete the request
				for _, s := range all {
					if s.closedAt.Load() == 0 {
						_, _ = s.c.Write(request[sent : sent+1])
					}
				}
				sent++
			}
		}
	}
	close(stopProbe)
	<-probeDone

	var open int
	var longest time.Duration
	for _, s := range all {
		at := s.closedAt.Load()
		if at == 0 {
			open++
			continue
		}
		longest = max(longest, time.Unix(0, at).Sub(s.opened))
	}
	if open > 0 || longest > closeBound+slack {
		t.Fatalf("%d of %d trickling connections still open, longest lived %v; want all closed within %v (+%v slack)",
			open, conns, longest, closeBound, slack)
	}
	if probeFails.Load() > 0 || probes.Load() == 0 {
		t.Fatalf("/healthz during the attack: %d answered 200, %d failed; want every probe answered", probes.Load(), probeFails.Load())
	}
	t.Logf("slowloris: %d connections, one header byte per %v: all closed, the longest after %v; /healthz answered %d probes, slowest %v",
		conns, trickleEvery, longest.Round(time.Millisecond), probes.Load(), time.Duration(probeMax.Load()).Round(time.Millisecond))
}

// TestSlowBody: claims whose body trickles in (one byte per second) are cut
// off at the request deadline, not held until the server's ReadTimeout
// (30 s): the handler's read deadline follows RequestTimeout.
func TestSlowBody(t *testing.T) {
	const (
		conns   = 20
		timeout = 2 * time.Second
		bound   = 10 * time.Second // well under ReadTimeout's 30 s
	)
	e := newEnv(t, envOption{api: func(c *Config) { c.RequestTimeout = timeout }})
	s := numSpot(0, 100)
	e.basicHunt(s)
	base := serveReal(t, e.api.Handler())
	addr := strings.TrimPrefix(base, "http://")
	body := fmt.Sprintf(`{"lat":%v,"lon":%v}`, s.lat, s.lon)
	type result struct {
		lived  time.Duration
		status string
	}
	results := make(chan result, conns)
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		head := fmt.Sprintf("POST /v1/hunts/h1/hotspots/s0/claim HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer %s\r\n"+
			"Idempotency-Key: slow-%d\r\nContent-Length: %d\r\n\r\n", e.token("p"+strconv.Itoa(i)), i, len(body))
		if _, err := c.Write([]byte(head)); err != nil {
			t.Fatalf("write head: %v", err)
		}
		opened := time.Now()
		go func() {
			done := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(c); done <- b }()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for j := 0; ; j++ {
				select {
				case b := <-done:
					status, _, _ := strings.Cut(string(b), "\r\n")
					results <- result{time.Since(opened), status}
					return
				case <-tick.C:
					if j < len(body)-1 { // never the last byte
						_, _ = c.Write([]byte{body[j]})
					}
				}
			}
		}()
	}
	deadline := time.After(bound + 5*time.Second)
	var longest time.Duration
	statuses := map[string]int{}
	for i := 0; i < conns; i++ {
		select {
		case r := <-results:
			longest = max(longest, r.lived)
			statuses[r.status]++
		case <-deadline:
			t.Fatalf("%d of %d slow-body claims still open after %v; want each cut off near RequestTimeout %v", conns-i, conns, bound+5*time.Second, timeout)
		}
	}
	if longest > bound {
		t.Fatalf("slow-body claims lived up to %v; want at most %v (RequestTimeout %v)", longest, bound, timeout)
	}
	// Each is told why: its body was too slow (408), not malformed (400).
	for st, n := range statuses {
		if !strings.HasPrefix(st, "HTTP/1.1 408 ") {
			t.Fatalf("%d slow-body claims were answered %q; want 408 (all answers: %v)", n, st, statuses)
		}
	}
	// Nothing was recorded for them.
	if n := e.wallet(e.token("p0")); n != 0 {
		t.Fatalf("wallet of a slow-body claimer = %d; want 0", n)
	}
	t.Logf("slow body: %d claims trickling 1 byte/s cut after at most %v (RequestTimeout %v); answers %v", conns, longest.Round(time.Millisecond), timeout, statuses)
}

// TestOverload is the overload acceptance test. The engine is made the
// bottleneck (2 partitions, batches of 4, every commit taking 20 ms: a slow
// disk, ~400 claims/s) and 256 clients claim in a closed loop for 3 s, which
// offers many times that. The server must shed with 429/503 + Retry-After
// (never 500, never an unbounded queue), keep the Go heap bounded, and
// after a restart every acknowledged claim must be in the log with the
// invariants intact.
//
// The heap bound: what the server holds per request in flight is ~20 KiB
// (both ends' connection buffers, request and response objects), and the
// engine admits at most partitions×(inbox+batch) = 24 requests; the other
// clients' requests are answered at once. So the heap grows with the 256
// connections (~5 MiB), not with the tens of thousands of requests offered.
// 64 MiB over the baseline leaves room for the race detector's and the
// garbage collector's slack; a server that queued what it should shed
// would pass it within a few thousand queued requests.
func TestOverload(t *testing.T) {
	const (
		senders      = 256
		players      = 4096
		hotspots     = 64 // players × hotspots > requestsMax: no (player, hotspot) pair is claimed twice
		loadFor      = 3 * time.Second
		requestsMax  = 200_000
		commitDelay  = 20 * time.Millisecond
		heapGrowMax  = 64 << 20
		rewardOfSpot = 3
	)
	dir := t.TempDir()
	type ack struct {
		player hunt.PlayerID
		key    string
		epoch  hunt.Epoch
	}
	var acks []ack
	t.Run("load", func(t *testing.T) {
		e := newEnv(t, envOption{conns: senders,
			eng: func(c *embedded.Config) {
				c.Dir, c.Partitions, c.InboxLenMax, c.BatchLenMax = dir, 2, 8, 4
				c.FaultHook = func(point string) error {
					if point == embedded.FaultBeforeCommit {
						time.Sleep(commitDelay) // a disk whose fsync takes 20 ms, not a wait for anything
					}
					return nil
				}
			},
			api: func(c *Config) { c.RequestTimeout = 10 * time.Second }, // sheds must come from the bounded inboxes
		})
		e.putHunt("h1", `{"name":"overload","claim_radius_m":50,"max_speed_mps":0}`)
		spots := make([]spot, hotspots)
		for i := range spots {
			spots[i] = numSpot(i, hunt.TicketsMax)
			spots[i].reward = rewardOfSpot
		}
		e.importSpots("h1", spots...)
		tokens := make([]string, players)
		for i := range tokens {
			tokens[i] = e.token("p" + strconv.Itoa(i))
		}

		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		baseline := ms.HeapInuse
		var heapMax atomic.Uint64
		stopSampling := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopSampling:
					return
				case <-tick.C:
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > heapMax.Load() {
					heapMax.Store(ms.HeapInuse)
				}
			}
		}()

		var next atomic.Int64
		var mu sync.Mutex
		counts := map[string]int{}
		var failure atomic.Pointer[string]
		fail := func(format string, args ...any) {
			s := fmt.Sprintf(format, args...)
			failure.CompareAndSwap(nil, &s)
		}
		stopAt := time.Now().Add(loadFor)
		began := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < senders; w++ {
			wg.Go(func() {
				for time.Now().Before(stopAt) && failure.Load() == nil {
					i := next.Add(1) - 1
					if i >= requestsMax {
						return
					}
					// Each (player, hotspot) pair once: every decision is a grant.
					p, sp := int(i%players), int(i/players)%hotspots
					key := "o-" + strconv.FormatInt(i, 10)
					hr, _ := http.NewRequest("POST", e.srv.URL+"/v1/hunts/h1/hotspots/"+spots[sp].id+"/claim",
						strings.NewReader(fmt.Sprintf(`{"lat":%v,"lon":%v}`, spots[sp].lat, spots[sp].lon)))
					hr.Header.Set("Authorization", "Bearer "+tokens[p])
					hr.Header.Set("Idempotency-Key", key)
					res, err := e.client.Do(hr)
					if err != nil {
						fail("claim %d: %v", i, err)
						return
					}
					b, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil {
						fail("claim %d: reading: %v", i, err)
						return
					}
					var code string
					switch res.StatusCode {
					case http.StatusCreated:
						var g struct {
							Epoch hunt.Epoch `json:"epoch"`
						}
						if err := json.Unmarshal(b, &g); err != nil {
							fail("claim %d = 201 %s: %v", i, b, err)
							return
						}
						mu.Lock()
						acks = append(acks, ack{hunt.PlayerID("p" + strconv.Itoa(p)), key, g.Epoch})
						mu.Unlock()
						code = "201"
					case http.StatusTooManyRequests, http.StatusServiceUnavailable:
						var pr struct{ Code string }
						_ = json.Unmarshal(b, &pr)
						if res.Header.Get("Retry-After") == "" {
							fail("claim %d = %d %s without Retry-After", i, res.StatusCode, b)
							return
						}
						code = strconv.Itoa(res.StatusCode) + " " + pr.Code
					default:
						fail("claim %d = %d %s; want 201, or 429/503 with Retry-After", i, res.StatusCode, b)
						return
					}
					mu.Lock()
					counts[code]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(began)
		close(stopSampling)
		<-sampled
		if f := failure.Load(); f != nil {
			t.Fatal(*f)
		}
		offered := next.Load()
		shed := int(offered) - len(acks)
		grown := int64(heapMax.Load()) - int64(baseline)
		t.Logf("overload: %d claims offered in %v (%.0f/s) by %d clients; %d acknowledged (%.0f/s); answers %v; heap in use %d MiB at rest, %d MiB at most (+%d MiB)",
			offered, elapsed.Round(time.Millisecond), float64(offered)/elapsed.Seconds(), senders, len(acks),
			float64(len(acks))/elapsed.Seconds(), counts, baseline>>20, heapMax.Load()>>20, grown>>20)
		if len(acks) == 0 || shed == 0 || counts["429 overloaded"] == 0 {
			t.Fatalf("overload: %d acknowledged, %d shed (%v); want both, with 429 overloaded among the sheds", len(acks), shed, counts)
		}
		if offered < 2*int64(len(acks)) {
			t.Fatalf("overload: %d offered for %d acknowledged; the test must offer at least twice what the server takes", offered, len(acks))
		}
		if grown > heapGrowMax {
			t.Fatalf("overload: heap in use grew by %d MiB; want at most %d MiB", grown>>20, heapGrowMax>>20)
		}
	})
	if t.Failed() {
		return
	}

	// Restart: every acknowledged claim is in the log as the grant it was
	// answered as, and the audit (I1-I4, I7) passes.
	eng, err := embedded.Open(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer eng.Close()
	type pk struct {
		p hunt.PlayerID
		k string
	}
	logged := map[pk]hunt.Event{}
	ctx := context.Background()
	if err := eng.Events(ctx, nil, func(ev *hunt.Event) error {
		if ev.Kind == hunt.KindClaimCompleted {
			logged[pk{ev.Player, ev.Key}] = *ev
		}
		return nil
	}); err != nil {
		t.Fatalf("Events: %v", err)
	}
	rewards := map[hunt.PlayerID]int64{}
	for _, a := range acks {
		ev, ok := logged[pk{a.player, a.key}]
		if !ok || ev.Outcome != hunt.Granted || ev.Epoch != a.epoch {
			t.Fatalf("acknowledged claim %s/%s at %v after restart: %+v (found %v); want the same grant", a.player, a.key, a.epoch, ev, ok)
		}
		rewards[a.player] += rewardOfSpot
	}
	for p, want := range rewards {
		if w, err := eng.Wallet(ctx, p); err != nil || w.Balance < want {
			t.Fatalf("wallet of %s after restart = %d, %v; want at least %d (its acknowledged grants)", p, w.Balance, err, want)
		}
	}
	rep, err := audit.Check(ctx, eng, nil)
	if err != nil || !rep.OK {
		t.Fatalf("audit after restart = %+v, %v; want ok", rep, err)
	}
	t.Logf("after restart: %d acknowledged claims all present; audit %s", len(acks), rep.Verdict())
}

// FuzzIdempotencyKey: the header parser never panics; what it accepts is
// one header value of 1-255 visible ASCII characters, returned unchanged;
// what it refuses maps to a 400 of the problem table.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"k1", "", " ", "a b", "\x7f", "é", strings.Repeat("k", 255), strings.Repeat("k", 256), "k\x00"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, v string, twice bool) {
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header["Idempotency-Key"] = []string{v}
		if twice {
			r.Header["Idempotency-Key"] = append(r.Header["Idempotency-Key"], v)
		}
		key, err := idempotencyKey(r)
		if err != nil {
			if p, ok := classify(err); !ok || p.status != http.StatusBadRequest {
				t.Fatalf("idempotencyKey(%q) error %v maps to %+v; want a 400 of the table", v, err, p)
			}
			return
		}
		if twice || key != v || len(v) == 0 || len(v) > hunt.KeyLenMax {
			t.Fatalf("idempotencyKey(%q, twice %v) = %q; want a refusal", v, twice, key)
		}
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] > '~' {
				t.Fatalf("idempotencyKey(%q) accepted byte %#x", v, v[i])
			}
		}
	})
}

// FuzzConsistencyToken: the after= parser never panics; what it accepts
// names an existing partition and a positive seq, and prints back to a
// token that parses to the same epoch.
func FuzzConsistencyToken(f *testing.F) {
	for _, s := range []string{"3.9", "0.1", "63.18446744073709551615", "64.1", "3.0", "3", ".", "-1.2", "3.9.1", "03.09", "+3.9", " 3.9", "4294967296.1"} {
		f.Add(s)
	}
	const partitions = 64
	f.Fuzz(func(t *testing.T, s string) {
		q := query{url.Values{"after": {s}}}
		e, ok, err := q.after(partitions)
		if err != nil {
			if !errors.Is(err, hunt.ErrBadToken) {
				t.Fatalf("after(%q) = %v; want hunt.ErrBadToken", s, err)
			}
			return
		}
		if !ok || int(e.Partition) >= partitions || e.Seq == 0 {
			t.Fatalf("after(%q) = %v, %v; want an existing partition and seq > 0", s, e, ok)
		}
		again, err := hunt.ParseConsistencyToken(hunt.ConsistencyToken(e))
		if err != nil || again != e {
			t.Fatalf("ParseConsistencyToken(ConsistencyToken(%v)) = %v, %v; want the same epoch", e, again, err)
		}
	})
}

// FuzzQuery: the strict query accessors the read routes use never panic,
// never return a value outside the range they were given, and refuse
// repeated parameters; regions are geohash prefixes within their bound.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"lat=48.85&lon=2.35&radius_m=500&limit=10", "limit=1&limit=2", "limit=-1", "lat=NaN", "lat=1e999",
		"region=u09t", "region=u09a", "region=U09T", "around=me&after=3.9", "%zz", "a=%", "lat=0x1p-2", "limit=1_000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		q, err := parseQuery(r)
		if err != nil {
			if !errors.Is(err, hunt.ErrInvalid) {
				t.Fatalf("parseQuery(%q) = %v; want hunt.ErrInvalid", raw, err)
			}
			return
		}
		if n, err := q.int("limit", 10, 1, 1000); err == nil && (n < 1 || n > 1000) {
			t.Fatalf("int(limit) of %q = %d; outside [1, 1000]", raw, n)
		} else if err == nil && len(q.v["limit"]) > 1 {
			t.Fatalf("int(limit) of %q accepted a repeated parameter", raw)
		}
		if v, err := q.float("lat", 0, -90, 90, false); err == nil && !(v >= -90 && v <= 90) {
			t.Fatalf("float(lat) of %q = %v; outside [-90, 90]", raw, v)
		}
		if region, ok, err := q.get("region"); err == nil && ok && validRegion(region, RegionLenMaxDefault) {
			if len(region) == 0 || len(region) > RegionLenMaxDefault || strings.ContainsAny(region, "ailoAILO") {
				t.Fatalf("validRegion(%q) accepted a non-geohash", region)
			}
		}
		if _, _, err := q.after(64); err != nil {
			if _, ok := classify(err); !ok {
				t.Fatalf("after of %q = %v: not in the problem table", raw, err)
			}
		}
	})
}
