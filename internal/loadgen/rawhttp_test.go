package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wireServer is a loopback TCP server that reads HTTP/1.1 requests
// (headers and a Content-Length body) and answers each with whatever
// answer returns for it: raw bytes, so tests can send what net/http never
// would. It counts connections and requests.
type wireServer struct {
	ln       net.Listener
	conns    atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	got      []string // each request's head, as received
}

// wireAnswer is what the server does with request n (0-based, over all
// connections) that arrived as the n-th on its connection (perConn).
type wireAnswer func(n, perConn int, head string) (out []byte, closeAfter bool)

func newWireServer(t testing.TB, answer wireAnswer) *wireServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &wireServer{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			wg.Go(func() { s.serve(nc, answer) })
		}
	})
	return s
}

func (s *wireServer) serve(nc net.Conn, answer wireAnswer) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	for perConn := 0; ; perConn++ {
		var head strings.Builder
		clen := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				clen, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if _, err := io.CopyN(io.Discard, br, int64(clen)); err != nil {
			return
		}
		n := int(s.requests.Add(1)) - 1
		s.mu.Lock()
		s.got = append(s.got, head.String())
		s.mu.Unlock()
		out, closeAfter := answer(n, perConn, head.String())
		if _, err := nc.Write(out); err != nil || closeAfter {
			return
		}
	}
}

func (s *wireServer) heads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func (s *wireServer) url() *url.URL { return &url.URL{Scheme: "http", Host: s.ln.Addr().String()} }

func canned(status int, body string, headers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.Bytes()
}

func always(out []byte) wireAnswer {
	return func(int, int, string) ([]byte, bool) { return out, false }
}

func rawTestClient(t testing.TB, ctx context.Context, u *url.URL, timeout time.Duration) *rawClient {
	t.Helper()
	c := newRawClient(ctx, u.Host, u.Path, 16, timeout)
	t.Cleanup(c.close)
	return c
}

// get runs one exchange and returns status, replayed and a copy of the body.
func get(c *rawClient, rq *request) (status int, replayed bool, body string, err error) {
	err = c.exchange(rq, func(a *rawAnswer) {
		status, replayed, body = a.status, a.replayed, string(a.body)
	})
	return
}

var testRq = &request{kind: opWallet, method: "GET", path: "/v1/wallet", auth: authBlock("tok")}

// TestRawClientKeepAlive: sequential exchanges share one connection, and
// the request on the wire is what Cairn expects.
func TestRawClientKeepAlive(t *testing.T) {
	srv := newWireServer(t, always(canned(200, `{"balance":3}`)))
	c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
	for i := range 50 {
		status, _, body, err := get(c, testRq)
		if err != nil || status != 200 || body != `{"balance":3}` {
			t.Fatalf("exchange %d = %d %q, %v; want 200 and the body", i, status, body, err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("50 sequential exchanges used %d connections; want 1 (keep-alive)", n)
	}
	claim := &request{kind: opClaim, method: "POST", path: "/v1/hunts/h/hotspots/s/claim", auth: authBlock("tok"),
		key: "k-1", body: []byte(`{"lat":1,"lon":2}`)}
	if _, _, _, err := get(c, claim); err != nil {
		t.Fatal(err)
	}
	heads := srv.heads()
	wantGet := "GET /v1/wallet HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\nAuthorization: Bearer tok\r\n\r\n"
	if heads[0] != wantGet {
		t.Errorf("GET on the wire:\n%q\nwant\n%q", heads[0], wantGet)
	}
	wantPost := "POST /v1/hunts/h/hotspots/s/claim HTTP/1.1\r\nHost: " + srv.ln.Addr().String() +
		"\r\nAuthorization: Bearer tok\r\nIdempotency-Key: k-1\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
	if got := heads[len(heads)-1]; got != wantPost {
		t.Errorf("POST on the wire:\n%q\nwant\n%q", got, wantPost)
	}
}

// TestRawClientConcurrent: exchanges in flight together each get their own
// connection, and the pool keeps them for the next round.
func TestRawClientConcurrent(t *testing.T) {
	srv := newWireServer(t, func(n, _ int, _ string) ([]byte, bool) {
		return canned(200, strconv.Itoa(n)), false
	})
	c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
	for range 5 {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				if status, _, _, err := get(c, testRq); err != nil || status != 200 {
					errs <- fmt.Errorf("status %d, %v", status, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	if n := srv.conns.Load(); n < 1 || n > 8+8 {
		t.Errorf("40 exchanges 8 at a time used %d connections; want at most 8 per round, reused", n)
	}
	if srv.requests.Load() != 40 {
		t.Errorf("server saw %d requests; want 40", srv.requests.Load())
	}
}

// TestRawClientResponses parses answers of every shape the client accepts.
func TestRawClientResponses(t *testing.T) {
	tests := []struct {
		name     string
		wire     string
		status   int
		replayed bool
		body     string
		close    bool
	}{
		{"content-length", "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", 201, false, "hello", false},
		{"replayed", "HTTP/1.1 409 Conflict\r\nidempotent-replayed: true\r\ncontent-length: 2\r\n\r\n{}", 409, true, "{}", false},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, false, "", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, false, "ok", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n", 200, false, "hello world", false},
		{"chunked beats length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200, false, "ok", false},
		{"connection close", "HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx", 503, false, "x", true},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, false, "x", true},
		{"until EOF", "HTTP/1.1 200 OK\r\n\r\nto the end", 200, false, "to the end", true},
		{"204 ignores length", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, false, "", false},
		{"100 continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, false, "ok", false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 200, false, "ok", false},
	}
	for _, tc := range tests {
		wire := tc.wire
		if tc.name != "until EOF" {
			wire += "NEXT"
		}
		br := bufio.NewReader(strings.NewReader(wire))
		a, _, err := readResponse(br, false, nil)
		if err != nil || a.status != tc.status || a.replayed != tc.replayed || string(a.body) != tc.body || a.close != tc.close {
			t.Errorf("%s: readResponse = status %d replayed %v body %q close %v, %v; want %d %v %q %v",
				tc.name, a.status, a.replayed, a.body, a.close, err, tc.status, tc.replayed, tc.body, tc.close)
			continue
		}
		if rest, _ := io.ReadAll(br); !tc.close && string(rest) != "NEXT" {
			t.Errorf("%s: left %q unread; want exactly the next answer's bytes", tc.name, rest)
		}
	}
}

// TestRawClientMalformed: a broken answer is an error (never a panic, never
// a status), and the connection it came on is not reused.
func TestRawClientMalformed(t *testing.T) {
	bad := []string{
		"",
		"HTTP/1.1 200 OK\r\n", // headers never end
		"garbage\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", rawReadBuf) + "\r\n\r\n",
		"HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", rawHeaderLines+1) + "\r\n",
		strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", rawInformational+2),
	}
	for _, wire := range bad {
		a, _, err := readResponse(bufio.NewReaderSize(strings.NewReader(wire), rawReadBuf), false, nil)
		if err == nil {
			t.Errorf("readResponse(%.60q) = status %d body %q; want an error", wire, a.status, a.body)
		}
	}

	// Over a connection: the error comes back, the next exchange works on a
	// new connection.
	srv := newWireServer(t, func(n, _ int, _ string) ([]byte, bool) {
		if n == 0 {
			return []byte("HTTP/1.1 2xx Broken\r\n\r\n"), false
		}
		return canned(200, "fine"), false
	})
	c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
	if _, _, _, err := get(c, testRq); !errors.Is(err, errMalformed) {
		t.Fatalf("exchange with a malformed answer: %v; want errMalformed", err)
	}
	if status, _, body, err := get(c, testRq); err != nil || status != 200 || body != "fine" {
		t.Fatalf("exchange after a malformed answer = %d %q, %v; want 200 fine", status, body, err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("connections = %d; want 2 (the broken one was dropped)", n)
	}
}

// TestRawClientBodyLimit: a body over bodyLenMax is cut there, and the
// connection (with the rest unread) is closed, not reused.
func TestRawClientBodyLimit(t *testing.T) {
	big := strings.Repeat("b", bodyLenMax+10)
	srv := newWireServer(t, always(canned(200, big)))
	c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
	for range 2 {
		status, _, body, err := get(c, testRq)
		if err != nil || status != 200 || len(body) != bodyLenMax {
			t.Fatalf("big answer = %d, %d bytes, %v; want 200 and %d bytes", status, len(body), err, bodyLenMax)
		}
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("connections = %d; want 2 (a cut answer's connection is closed)", n)
	}
}

// TestRawClientServerCloses: a server that closes each connection after a
// few answers (with or without saying so) costs reconnects, not errors.
func TestRawClientServerCloses(t *testing.T) {
	for _, say := range []bool{true, false} {
		srv := newWireServer(t, func(_, perConn int, _ string) ([]byte, bool) {
			if perConn == 2 {
				if say {
					return canned(200, "{}", "Connection: close"), true
				}
				return canned(200, "{}"), true
			}
			return canned(200, "{}"), false
		})
		c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
		for i := range 30 {
			rq := testRq
			if i%2 == 1 {
				rq = &request{kind: opClaim, method: "POST", path: "/c", key: "k" + strconv.Itoa(i), body: []byte("{}")}
			}
			if status, _, _, err := get(c, rq); err != nil || status != 200 {
				t.Fatalf("say %v: exchange %d = %d, %v; want 200 (reconnected)", say, i, status, err)
			}
		}
		if n, r := srv.conns.Load(), srv.requests.Load(); n != 10 || r != 30 {
			t.Errorf("say %v: %d connections for %d requests; want 10 for 30", say, n, r)
		}
	}
}

// TestRawClientNoRetryWithoutKey: a POST without an Idempotency-Key is
// never sent twice, even when its keep-alive connection turns out closed.
func TestRawClientNoRetryWithoutKey(t *testing.T) {
	srv := newWireServer(t, func(_, perConn int, _ string) ([]byte, bool) {
		return canned(200, "{}"), true // closes after every answer, without saying so
	})
	c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
	if _, _, _, err := get(c, testRq); err != nil {
		t.Fatal(err)
	}
	// The POST goes out on the connection the server closed after its one
	// answer: it can only fail, and must not be sent again elsewhere.
	post := &request{kind: opSpend, method: "POST", path: "/p", body: []byte("{}")}
	if _, _, _, err := get(c, post); err == nil {
		t.Error("POST on a connection the server closed succeeded; want an error")
	}
	if r, n := srv.requests.Load(), srv.conns.Load(); r != 1 || n != 1 {
		t.Errorf("server saw %d requests on %d connections; want 1 on 1 (the POST not retried)", r, n)
	}
}

// TestRawClientTimeout: a server that never answers makes a timeout error,
// classified as one by the recorder.
func TestRawClientTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	done := make(chan struct{})
	defer func() { ln.Close(); close(done); held.Wait() }()
	held.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			held.Go(func() { <-done; nc.Close() })
		}
	})
	u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	c := newClient(context.Background(), u, "", 4, 200*time.Millisecond)
	defer c.close()
	rec := newRecorder()
	resp, _ := rec.execute(c, testRq, time.Now())
	var ne net.Error
	if resp.status != 0 || !errors.As(resp.err, &ne) || !ne.Timeout() {
		t.Fatalf("exchange with a silent server = %d, %v; want a timeout", resp.status, resp.err)
	}
	var res Result
	rec.fill(&res, time.Now())
	if res.ErrorKinds[errTimeout] != 1 {
		t.Errorf("error kinds = %v; want one %q", res.ErrorKinds, errTimeout)
	}
}

// TestRawClientAbort: ending the client's context cuts off the exchanges
// in flight with context.Canceled, and refuses new ones.
func TestRawClientAbort(t *testing.T) {
	srv, _ := stallServer(t, time.Minute)
	u, _ := url.Parse(srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	c := rawTestClient(t, ctx, u, time.Minute)
	errs := make(chan error, 3)
	for range 3 {
		go func() { _, _, _, err := get(c, testRq); errs <- err }()
	}
	time.Sleep(100 * time.Millisecond) // let them get in flight; the test asserts no timing
	cancel()
	for range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("exchange in flight at cancel: %v; want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an exchange outlived its cancelled context by 10 s")
		}
	}
	if _, _, _, err := get(c, testRq); !errors.Is(err, context.Canceled) {
		t.Errorf("exchange after cancel: %v; want context.Canceled", err)
	}
}

// TestRawClientAgainstNetHTTP: the raw client against Go's own server,
// which answers small bodies with Content-Length and large streamed ones
// chunked, and reads what the raw client writes.
func TestRawClientAgainstNetHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Idempotent-Replayed", "true")
		if r.URL.Path == "/chunked" {
			for range 3 {
				fmt.Fprintf(w, "%s-%s;", r.Header.Get("Idempotency-Key"), b)
				http.NewResponseController(w).Flush()
			}
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), b)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c := rawTestClient(t, context.Background(), u, 10*time.Second)
	rq := &request{method: "POST", path: "/x?a=1&b=2", auth: authBlock("t0k"), key: "k9", body: []byte(`{"v":1}`)}
	status, replayed, body, err := get(c, rq)
	if err != nil || status != 201 || !replayed || body != `POST /x?a=1&b=2 Bearer t0k {"v":1}` {
		t.Errorf("exchange = %d %v %q, %v", status, replayed, body, err)
	}
	rq.path = "/chunked"
	status, _, body, err = get(c, rq)
	if want := `k9-{"v":1};k9-{"v":1};k9-{"v":1};`; err != nil || status != 200 || body != want {
		t.Errorf("chunked exchange = %d %q, %v; want 200 %q", status, body, err, want)
	}
}

// TestRawClientRefusesBadRequests: bytes that would split the request line
// or a header are refused before anything is written.
func TestRawClientRefusesBadRequests(t *testing.T) {
	srv := newWireServer(t, always(canned(200, "{}")))
	c := rawTestClient(t, context.Background(), srv.url(), 10*time.Second)
	for _, rq := range []*request{
		{method: "GET", path: "/a b"},
		{method: "GET", path: "/a\r\nX-Injected: 1"},
		{method: "POST", path: "/p", key: "k\r\nX: y", body: []byte("{}")},
		{method: "get", path: "/"},
	} {
		if _, _, _, err := get(c, rq); err == nil {
			t.Errorf("exchange of %+v succeeded; want it refused", rq)
		}
	}
	if r := srv.requests.Load(); r != 0 {
		t.Errorf("server saw %d requests; want none", r)
	}
	if authBlock("a\r\nb") != nil || authBlock("") != nil {
		t.Error("authBlock accepted a token that would break the header")
	}
}

// TestScanAnswer reads the members the generator needs from Cairn's bodies
// and survives everything else.
func TestScanAnswer(t *testing.T) {
	tests := []struct {
		body string
		want answer
	}{
		{`{"claim_id":"3.17","outcome":"granted","epoch":{"partition":3,"seq":17},"consistency_token":"3.17"}`,
			answer{Outcome: "granted", ConsistencyToken: "3.17"}},
		{`{"type":"https://cairn.dev/problems/sold_out","title":"x","status":409,"outcome":"sold_out"}`,
			answer{Type: "https://cairn.dev/problems/sold_out", Outcome: "sold_out"}},
		{` { "code" : "overloaded" , "nested":{"outcome":"no","a":[1,{"b":"}"}]} } `, answer{Code: "overloaded"}},
		{`{"entries":[{"rank":1,"player":"a\"b","score":10}],"staleness_ms":2.5}`, answer{StalenessMS: 2.5, HasStaleness: true}},
		{`{"staleness_ms":null}`, answer{}},
		{`{"outcome":"esc\u0061ped\n"}`, answer{Outcome: "escaped\n"}},
		{`{"outcome":7,"code":"c"}`, answer{Code: "c"}},
		{`[{"outcome":"no"}]`, answer{}},
		{`{"outcome":"granted"`, answer{Outcome: "granted"}},
		{`{"outcome":"gra`, answer{}},
		{``, answer{}},
		{`{}`, answer{}},
		{`<html>`, answer{}},
		{`{"outcome":"a","outcome":"b"}`, answer{Outcome: "b"}},
		{`{"outcome":"a","outcome":null}`, answer{}},
		{`{"out\u0063ome":"x"}`, answer{Outcome: "x"}},
		{`{"outcome":"bad \x escape","code":"c"}`, answer{Code: "c"}},
	}
	for _, tc := range tests {
		var a answer
		scanAnswer([]byte(tc.body), &a, true)
		if a != tc.want {
			t.Errorf("scanAnswer(%s) = %+v; want %+v", tc.body, a, tc.want)
		}
	}
	var a answer
	scanAnswer([]byte(`{"consistency_token":"3.17"}`), &a, false)
	if a.ConsistencyToken != "" {
		t.Errorf("scanAnswer(wantToken false) kept the token %q", a.ConsistencyToken)
	}
	deep := strings.Repeat(`{"a":[`, 100_000) + strings.Repeat("]}", 100_000)
	scanAnswer([]byte(`{"x":`+deep+`,"outcome":"late"}`), &a, false)
	if a.Outcome != "late" {
		t.Errorf("scanAnswer after a deeply nested member: outcome %q; want late", a.Outcome)
	}
}

// TestRawClientStream: a live feed is read line by line as the server
// flushes it (chunked), and ending the context ends the stream.
func TestRawClientStream(t *testing.T) {
	sent := make(chan string)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "text/event-stream" || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev := <-sent:
				fmt.Fprintf(w, "event: claim\ndata: %s\n\n", ev)
				http.NewResponseController(w).Flush()
			}
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c := rawTestClient(t, context.Background(), u, time.Second) // the stream outlives the request timeout
	ctx, cancel := context.WithCancel(context.Background())
	rq := &request{method: "GET", path: "/events", auth: authBlock("tok"), accept: "text/event-stream"}
	status, body, end, err := c.openStream(ctx, rq)
	defer end()
	if err != nil || status != 200 {
		t.Fatalf("openStream = %d, %v; want 200", status, err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				lines <- d
			}
		}
	}()
	for i := range 3 {
		ev := fmt.Sprintf(`{"n":%d}`, i)
		time.Sleep(1200 * time.Millisecond * time.Duration(i%2)) // once longer than the request timeout; no timing asserted
		sent <- ev
		if got := <-lines; got != ev {
			t.Fatalf("event %d = %q; want %q", i, got, ev)
		}
	}
	cancel()
	select {
	case _, open := <-lines:
		if open {
			t.Fatal("an event after cancel")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its cancelled context by 10 s")
	}

	rq.auth = authBlock("wrong")
	status, _, end2, err := c.openStream(context.Background(), rq)
	end2()
	if err != nil || status != http.StatusUnauthorized {
		t.Errorf("openStream(wrong token) = %d, %v; want 401", status, err)
	}
}

func TestEventAt(t *testing.T) {
	at, ok := eventAt([]byte(` {"claim_id":"3.1","at":"2026-12-01T02:18:53.123456789Z","player":"p"}`))
	if want := time.Date(2026, 12, 1, 2, 18, 53, 123456789, time.UTC); !ok || !at.Equal(want) {
		t.Errorf("eventAt = %v, %v; want %v", at, ok, want)
	}
	for _, bad := range []string{`{"at":7}`, `{"at":"yesterday"}`, `{}`, `not json`, `{"at":"2026-12-01T02:18:53Z","at":null}`} {
		if at, ok := eventAt([]byte(bad)); ok {
			t.Errorf("eventAt(%s) = %v; want not ok", bad, at)
		}
	}
}
