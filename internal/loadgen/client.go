package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/hunt"
)

// ErrNotLoopback refuses a target that is not this machine: cairn load only
// ever sends its traffic to 127.0.0.0/8, ::1 or localhost.
var ErrNotLoopback = errors.New("target must be a loopback address (127.0.0.0/8, ::1 or localhost)")

// Limits of the HTTP client. Units are in the names.
const (
	bodyLenMax      = 1 << 20 // a response body read beyond this is cut (Cairn answers are small)
	dialTimeout     = 5 * time.Second
	auditTimeout    = 10 * time.Minute // the audit folds the whole log
	setupTimeout    = 10 * time.Minute // hotspot imports of millions of rows
	readyWaitMax    = 10 * time.Second
	readyPollPeriod = 100 * time.Millisecond
)

// CheckTarget parses a --target URL and refuses anything but http(s) to a
// loopback host.
func CheckTarget(target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("target %q: scheme must be http or https", target)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("target %q: want scheme://host:port[/prefix] only", target)
	}
	if !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("target %q: host %q: %w", target, u.Hostname(), ErrNotLoopback)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// loopbackOnly is a net.Dialer Control hook: it sees the resolved address, so
// even a "localhost" that resolves elsewhere is refused before a packet leaves.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dial %s: %w", address, ErrNotLoopback)
	}
	return nil
}

// client talks to one Cairn over HTTP. It is safe for concurrent use.
// Load traffic goes through raw, the generator's own keep-alive HTTP/1.1
// client; setup, the audit, /readyz and the SSE streams go through
// net/http, and so does everything for an https target (raw is nil then).
type client struct {
	base    string // scheme://host:port[/prefix], no trailing slash
	admin   string // admin bearer token
	ctx     context.Context
	raw     *rawClient
	http    *http.Client
	streams *http.Client // no overall timeout: SSE streams live for the whole run
}

// newClient makes a client for a checked target. ctx is the client's
// lifetime: when it ends, every load request in flight is cut off.
func newClient(ctx context.Context, target *url.URL, admin string, connsMax int, timeout time.Duration) *client {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second, Control: loopbackOnly}
	tr := &http.Transport{
		DialContext: d.DialContext,
		// Keep every connection the generator may use open, so an open-loop
		// burst does not churn through TIME_WAIT sockets.
		MaxIdleConns:        connsMax,
		MaxIdleConnsPerHost: connsMax,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: dialTimeout,
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &client{
		base:    target.String(),
		admin:   admin,
		ctx:     ctx,
		http:    &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: noRedirect},
		streams: &http.Client{Transport: tr, CheckRedirect: noRedirect},
	}
	if target.Scheme == "http" {
		c.raw = newRawClient(ctx, target.Host, target.EscapedPath(), connsMax, timeout)
	}
	return c
}

func (c *client) close() {
	if c.raw != nil {
		c.raw.close()
	}
	c.http.CloseIdleConnections()
}

// response is what one exchange came back with. status 0 means no HTTP
// answer (err says why). body is kept only for a request sent twice (its
// pair compares the bytes of both answers).
type response struct {
	status   int
	body     []byte
	replayed bool
	err      error
}

// do performs one load exchange and returns its answer with the members
// of the body the generator looks at (see scanAnswer).
func (c *client) do(rq *request) (response, answer) {
	var a answer
	wantToken := rq.done != nil
	if c.raw == nil {
		resp := c.sendHTTP(rq)
		if resp.status != 0 {
			scanAnswer(resp.body, &a, wantToken)
		}
		if rq.pair == nil {
			resp.body = nil
		}
		return resp, a
	}
	var resp response
	resp.err = c.raw.exchange(rq, func(ra *rawAnswer) {
		resp.status, resp.replayed = ra.status, ra.replayed
		scanAnswer(ra.body, &a, wantToken)
		if rq.pair != nil {
			resp.body = bytes.Clone(ra.body)
		}
	})
	return resp, a
}

// openStream opens a long-lived GET (the SSE feed) and returns its status
// and body; end must be called when done. It ends with ctx.
func (c *client) openStream(ctx context.Context, rq *request) (status int, body io.Reader, end func(), err error) {
	if c.raw != nil {
		return c.raw.openStream(ctx, rq)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, c.base+rq.path, nil)
	if err != nil {
		return 0, nil, func() {}, err
	}
	if v, ok := bytes.CutPrefix(rq.auth, []byte("Authorization: ")); ok {
		req.Header.Set("Authorization", string(bytes.TrimSpace(v)))
	}
	if rq.accept != "" {
		req.Header.Set("Accept", rq.accept)
	}
	resp, err := c.streams.Do(req)
	if err != nil {
		return 0, nil, func() {}, err
	}
	return resp.StatusCode, resp.Body, func() { resp.Body.Close() }, nil
}

// sendHTTP performs one exchange through net/http (https targets) and
// reads the whole (bounded) body.
func (c *client) sendHTTP(rq *request) response {
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(c.ctx, rq.method, c.base+rq.path, body)
	if err != nil {
		return response{err: err}
	}
	if v, ok := bytes.CutPrefix(rq.auth, []byte("Authorization: ")); ok {
		req.Header.Set("Authorization", string(bytes.TrimSpace(v)))
	}
	if rq.key != "" {
		req.Header.Set("Idempotency-Key", rq.key)
	}
	if rq.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, bodyLenMax))
	if err != nil {
		return response{err: fmt.Errorf("read body: %w", err)}
	}
	return response{status: resp.StatusCode, body: b, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
}

// adminCall sends an admin call and returns its status and (bounded) body.
// Any status but 2xx and 409 is an error naming it.
func (c *client) adminCall(ctx context.Context, method, path, ctype string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.admin)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	// Setup and audit calls may take minutes; they carry their own deadline
	// in ctx instead of the per-request timeout of load traffic.
	resp, err := c.streams.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16*bodyLenMax))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusConflict {
		return resp.StatusCode, b, fmt.Errorf("%s %s: status %d: %.500s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, b, nil
}

// waitReady polls /readyz until it answers 200 or readyWaitMax passes.
func (c *client) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyWaitMax)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err == nil {
			drain(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("/readyz answered %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not ready after %v: %w", c.base, readyWaitMax, last)
		case <-time.After(readyPollPeriod):
		}
	}
}

// putHunt creates (or updates) the run's hunt. Its speed check is off: the
// generated players jump between random hotspots, as no person walks, and a
// load run measures claims, not the movement rule.
func (c *client) putHunt(ctx context.Context, id hunt.HuntID, name string) error {
	b, err := json.Marshal(struct {
		Name         string  `json:"name"`
		ClaimRadiusM float64 `json:"claim_radius_m"`
		MaxSpeedMps  float64 `json:"max_speed_mps"`
	}{name, hunt.ClaimRadiusMDefault, 0})
	if err != nil {
		return err
	}
	status, body, err := c.adminCall(ctx, http.MethodPut, "/v1/admin/hunts/"+url.PathEscape(string(id)), "application/json", bytes.NewReader(b))
	if err == nil && status == http.StatusConflict {
		err = fmt.Errorf("PUT hunt %s: status 409: %.500s", id, body)
	}
	return err
}

// importHotspots streams n hotspots, gen(i) for i in [0, n), as NDJSON in one
// request: millions of rows never sit in memory on either side.
func (c *client) importHotspots(ctx context.Context, id hunt.HuntID, n int, gen func(i int, s *hunt.Hotspot)) error {
	pr, pw := io.Pipe()
	go func() {
		var line []byte
		var s hunt.Hotspot
		for i := range n {
			gen(i, &s)
			line = appendHotspotJSON(line[:0], &s)
			if _, err := pw.Write(line); err != nil {
				return // the request failed; its error is reported below
			}
		}
		pw.Close()
	}()
	var out struct {
		Imported int `json:"imported"`
	}
	status, body, err := c.adminCall(ctx, http.MethodPost, "/v1/admin/hunts/"+url.PathEscape(string(id))+"/hotspots",
		"application/x-ndjson", pr)
	pr.CloseWithError(errors.New("import finished")) // unblocks the writer if the server stopped reading
	if err == nil && status == http.StatusConflict {
		err = fmt.Errorf("status 409: %.500s", body)
	}
	if err == nil {
		err = json.Unmarshal(body, &out)
	}
	if err != nil {
		return fmt.Errorf("import hotspots: %w", err)
	}
	if out.Imported != n {
		return fmt.Errorf("import hotspots: server imported %d of %d", out.Imported, n)
	}
	return nil
}

// audit fetches GET /v1/admin/audit: 200 with the report when every
// invariant holds, 409 (a problem whose `report` member is the report) when not.
func (c *client) audit(ctx context.Context) (audit.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	status, body, err := c.adminCall(ctx, http.MethodGet, "/v1/admin/audit", "", nil)
	if err != nil {
		return audit.Report{}, fmt.Errorf("audit: %w", err)
	}
	if status != http.StatusOK && status != http.StatusConflict {
		return audit.Report{}, fmt.Errorf("audit: unexpected status %d", status)
	}
	var r audit.Report
	if status == http.StatusConflict {
		var problem struct {
			Report *audit.Report `json:"report"`
		}
		if err := json.Unmarshal(body, &problem); err != nil || problem.Report == nil {
			return audit.Report{}, fmt.Errorf("audit: status 409 without a report: %.500s", body)
		}
		r = *problem.Report
		r.OK = false // trust the status over a body that disagrees
	} else if err := json.Unmarshal(body, &r); err != nil {
		return audit.Report{}, fmt.Errorf("audit: report does not decode: %w", err)
	}
	if !r.OK && r.ViolationCount == 0 && len(r.Violations) == 0 {
		// A failing report must name something; never let it read as a pass.
		r.ViolationCount = 1
		r.Violations = []audit.Violation{{Invariant: "?", Detail: fmt.Sprintf("status %d with a failing report that names no violation", status)}}
	}
	return r, nil
}

// Audit runs the server's invariant check (GET /v1/admin/audit) and returns
// its report. It is what `cairn verify --target` calls.
func Audit(ctx context.Context, target, adminToken string) (audit.Report, error) {
	u, err := CheckTarget(target)
	if err != nil {
		return audit.Report{}, err
	}
	c := newClient(ctx, u, adminToken, 1, auditTimeout)
	defer c.close()
	return c.audit(ctx)
}

// mintToken signs a player token the way Cairn checks them: HS256 with sub,
// iat and exp.
func mintToken(secret []byte, player hunt.PlayerID, now time.Time, ttl time.Duration) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   string(player),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	return t.SignedString(secret)
}
