package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rawClient is the HTTP/1.1 client of the load traffic itself (claims,
// spends, wallet and leaderboard reads): what net/http's client does for
// one request, less everything Cairn's answers do not need. Each exchange
// takes a keep-alive connection from a LIFO pool (or dials one), writes the
// request rendered into the connection's own buffer in one write, and reads
// the answer on the same goroutine: status line, the few headers the
// generator looks at (Content-Length, Transfer-Encoding, Connection,
// Idempotent-Replayed) and the body into the connection's reused buffer.
// No goroutine per connection, no header map, no per-request allocation for
// the exchange itself.
//
// It speaks plain HTTP to loopback only: the dialer's Control hook refuses
// any other resolved address. Setup, the audit, /readyz and the SSE streams
// stay on net/http (rare or streaming), and so does an https target.
//
// Safe for concurrent use. Every exchange in flight is cut off when the
// context the client was made with ends (Ctrl-C), and reports that
// context's error.
type rawClient struct {
	addr    string // host:port to dial
	host    []byte // "Host: ...\r\n"
	prefix  string // the target's path prefix, "" or "/x"
	timeout time.Duration
	idleMax int
	dialer  net.Dialer
	ctx     context.Context
	stop    func() bool // unregisters the abort hook

	aborted atomic.Bool
	mu      struct {
		sync.Mutex
		idle  []*rawConn            // LIFO: the hottest connection is reused first
		conns map[*rawConn]struct{} // every open connection, idle or busy
		err   error                 // why the client was aborted
	}
}

// rawConn is one persistent connection and its buffers.
type rawConn struct {
	nc   net.Conn
	sys  rawIO         // raw system calls on nc, where supported (rawio_linux.go)
	br   *bufio.Reader // reads through Read below
	wbuf []byte        // the rendered request
	body []byte        // the last answer's body (reused)
	used bool          // has carried an exchange: a failure before any answer byte may be a stale keep-alive
}

// Sizes of the raw client's buffers and bounds on what it accepts.
const (
	rawReadBuf       = 8 << 10 // also the longest header line accepted
	rawWriteBuf      = 1 << 10 // grown as needed
	rawHeaderLines   = 100     // header lines in one response at most
	rawInformational = 5       // 1xx answers skipped before the real one at most
)

// errMalformed is the class of every response the raw client cannot parse.
var errMalformed = errors.New("malformed HTTP response")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// newRawClient makes a client for an http target (already checked to be
// loopback). idleMax bounds the keep-alive connections kept between
// exchanges; ctx ends every exchange in flight when it ends.
func newRawClient(ctx context.Context, host, prefix string, idleMax int, timeout time.Duration) *rawClient {
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		addr = net.JoinHostPort(trimBrackets(host), "80")
	}
	c := &rawClient{
		addr:    addr,
		host:    []byte("Host: " + host + "\r\n"),
		prefix:  prefix,
		timeout: timeout,
		idleMax: max(idleMax, 1),
		dialer:  net.Dialer{Timeout: dialTimeout, Control: loopbackOnly},
		ctx:     ctx,
	}
	c.mu.conns = map[*rawConn]struct{}{}
	c.stop = context.AfterFunc(ctx, func() { c.abort(context.Cause(ctx)) })
	return c
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// abort cuts off every exchange in flight and refuses new ones with err.
func (c *rawClient) abort(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err == nil {
		c.mu.err = err
	}
	// Store before touching the connections: an exchange that set its own
	// deadline after this loop sees the flag and gives up (see exchange).
	c.aborted.Store(true)
	past := time.Unix(1, 0)
	for cn := range c.mu.conns {
		_ = cn.nc.SetDeadline(past)
	}
	for _, cn := range c.mu.idle {
		cn.nc.Close()
		delete(c.mu.conns, cn)
	}
	c.mu.idle = nil
}

func (c *rawClient) abortErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err
}

// close closes every connection; exchanges still in flight fail.
func (c *rawClient) close() {
	c.stop()
	c.abort(net.ErrClosed)
	c.mu.Lock()
	defer c.mu.Unlock()
	for cn := range c.mu.conns {
		cn.nc.Close()
	}
	clear(c.mu.conns)
}

// get takes an idle connection, or dials a new one.
func (c *rawClient) get(fresh bool) (*rawConn, error) {
	if c.aborted.Load() {
		return nil, c.abortErr()
	}
	if !fresh {
		c.mu.Lock()
		if n := len(c.mu.idle); n > 0 {
			cn := c.mu.idle[n-1]
			c.mu.idle[n-1] = nil
			c.mu.idle = c.mu.idle[:n-1]
			c.mu.Unlock()
			return cn, nil
		}
		c.mu.Unlock()
	}
	nc, err := c.dialer.DialContext(c.ctx, "tcp", c.addr)
	if err != nil {
		if c.aborted.Load() {
			return nil, c.abortErr()
		}
		return nil, err
	}
	cn := &rawConn{nc: nc, wbuf: make([]byte, 0, rawWriteBuf)}
	cn.sys.init(nc)
	cn.br = bufio.NewReaderSize(cn, rawReadBuf)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil {
		nc.Close()
		return nil, c.mu.err
	}
	c.mu.conns[cn] = struct{}{}
	return cn, nil
}

// put returns a connection after a complete exchange, or closes it.
func (c *rawClient) put(cn *rawConn, keep bool) {
	cn.used = true
	c.mu.Lock()
	if keep && c.mu.err == nil && len(c.mu.idle) < c.idleMax {
		c.mu.idle = append(c.mu.idle, cn)
		c.mu.Unlock()
		return
	}
	delete(c.mu.conns, cn)
	c.mu.Unlock()
	cn.nc.Close()
}

// Read is the connection's reader for its bufio.Reader.
func (cn *rawConn) Read(p []byte) (int, error) {
	if cn.sys.ok() {
		return cn.sys.read(p)
	}
	return cn.nc.Read(p)
}

func (cn *rawConn) write(p []byte) error {
	if cn.sys.ok() {
		return cn.sys.write(p)
	}
	_, err := cn.nc.Write(p)
	return err
}

// openStream sends a GET whose answer is read as it comes (the SSE feed),
// on a connection of its own with no deadline, and returns the status and
// the body. The stream ends when ctx ends, the client is aborted, or end
// is called; end must be called in every case.
func (c *rawClient) openStream(ctx context.Context, rq *request) (status int, body io.Reader, end func(), err error) {
	cn, err := c.get(true)
	if err != nil {
		return 0, nil, func() {}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = cn.nc.SetDeadline(time.Unix(1, 0)) })
	end = func() { stop(); c.put(cn, false) }
	if cn.wbuf, err = c.render(cn.wbuf[:0], rq); err == nil {
		err = cn.write(cn.wbuf)
	}
	var a rawAnswer
	var fr framing
	if err == nil {
		a, fr, err = readHead(cn.br)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return 0, nil, end, err
	}
	switch {
	case fr.chunked:
		body = httputil.NewChunkedReader(cn.br)
	case fr.contentLen >= 0:
		body = io.LimitReader(cn.br, fr.contentLen)
	default:
		body = cn.br
	}
	return a.status, body, end, nil
}

// rawAnswer is one answer as the raw client read it. body aliases the
// connection's buffer: it is valid until the connection is put back.
type rawAnswer struct {
	status   int
	replayed bool
	close    bool // the connection cannot carry another exchange
	body     []byte
}

// exchange sends rq and reads its answer, then hands the answer to use while
// the connection's buffer still holds it, and only then puts the connection
// back. A request that may be repeated (a GET, or one with an
// Idempotency-Key, as net/http also decides) and that failed on a reused
// connection before any byte of an answer came back is sent once more on a
// new connection: the server closed an idle keep-alive under it.
func (c *rawClient) exchange(rq *request, use func(a *rawAnswer)) error {
	retried := false
	for {
		cn, err := c.get(retried)
		if err != nil {
			return err
		}
		reused := cn.used
		a, err := c.roundTrip(cn, rq)
		if err == nil {
			use(&a)
			c.put(cn, !a.close)
			return nil
		}
		c.put(cn, false)
		if c.aborted.Load() {
			if aerr := c.abortErr(); aerr != nil {
				return aerr
			}
		}
		if reused && !retried && errors.Is(err, errStaleConn) && (rq.method == "GET" || rq.key != "") {
			retried = true
			continue
		}
		return err
	}
}

// errStaleConn marks a failure before the first byte of an answer on a
// connection the server may have closed while it sat idle.
var errStaleConn = errors.New("connection closed before an answer")

func (c *rawClient) roundTrip(cn *rawConn, rq *request) (rawAnswer, error) {
	var err error
	cn.wbuf, err = c.render(cn.wbuf[:0], rq)
	if err != nil {
		return rawAnswer{}, err
	}
	if err := cn.nc.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return rawAnswer{}, err
	}
	if c.aborted.Load() {
		return rawAnswer{}, c.abortErr()
	}
	if err := cn.write(cn.wbuf); err != nil {
		return rawAnswer{}, staleOr(err)
	}
	if _, err := cn.br.Peek(1); err != nil {
		return rawAnswer{}, staleOr(err)
	}
	a, body, err := readResponse(cn.br, rq.method == "HEAD", cn.body[:0])
	cn.body = body
	return a, err
}

// staleOr marks the errors of a peer that closed the connection.
func staleOr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errStaleConn, err)
	}
	return err
}

// render writes rq as an HTTP/1.1 request into b. Every piece is checked
// for bytes that would break the request line or a header (CR, LF, spaces,
// controls); the per-player Authorization block was checked when built.
func (c *rawClient) render(b []byte, rq *request) ([]byte, error) {
	if !methodOK(rq.method) || !pathOK(rq.path) || !pathOK(rq.key) || !pathOK(rq.accept) {
		return b, fmt.Errorf("request %s %q key %q: not a valid request line or header", rq.method, rq.path, rq.key)
	}
	b = append(b, rq.method...)
	b = append(b, ' ')
	b = append(b, c.prefix...)
	b = append(b, rq.path...)
	b = append(b, " HTTP/1.1\r\n"...)
	b = append(b, c.host...)
	b = append(b, rq.auth...)
	if rq.accept != "" {
		b = append(b, "Accept: "...)
		b = append(b, rq.accept...)
		b = append(b, "\r\n"...)
	}
	if rq.key != "" {
		b = append(b, "Idempotency-Key: "...)
		b = append(b, rq.key...)
		b = append(b, "\r\n"...)
	}
	if rq.body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(rq.body)), 10)
		b = append(b, "\r\n\r\n"...)
		return append(b, rq.body...), nil
	}
	return append(b, "\r\n"...), nil
}

// methodOK reports whether s is a non-empty run of capital letters.
func methodOK(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// pathOK reports whether s has only visible ASCII (no space, CR, LF, DEL).
func pathOK(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// authBlock is the pre-rendered Authorization header line of a bearer token,
// or nil for a token that cannot be sent as one.
func authBlock(token string) []byte {
	if token == "" || !pathOK(token) {
		return nil
	}
	return []byte("Authorization: Bearer " + token + "\r\n")
}

// readResponse reads one answer from br: status line, headers, body. It
// appends the body to buf (which it may grow) and returns the grown buffer
// for the connection to keep. head is set for a HEAD request (no body).
// It never reads past the end of this answer, so the connection may carry
// the next one unless rawAnswer.close says otherwise. A body longer than
// bodyLenMax is cut there and the connection closed.
func readResponse(br *bufio.Reader, head bool, buf []byte) (rawAnswer, []byte, error) {
	a, fr, err := readHead(br)
	if err != nil {
		return a, buf, err
	}
	switch {
	case head || a.status == 204 || a.status == 304:
		return a, buf[:0], nil
	case fr.chunked:
		body, err := readChunked(br, buf[:0])
		a.body = body
		return a, body, err
	case fr.contentLen >= 0:
		n := fr.contentLen
		if n > bodyLenMax {
			n, a.close = bodyLenMax, true
		}
		buf = grow(buf[:0], int(n))
		if _, err := io.ReadFull(br, buf); err != nil {
			return a, buf, fmt.Errorf("read body: %w", unexpected(err))
		}
		a.body = buf
		return a, buf, nil
	default: // delimited by the end of the connection
		a.close = true
		body, err := readUntilEOF(br, buf[:0])
		a.body = body
		return a, body, err
	}
}

// framing is how an answer's body is delimited.
type framing struct {
	contentLen int64 // -1: none given
	chunked    bool
}

// readHead reads an answer's status line and headers, skipping 1xx
// answers, and leaves br at the first byte of the body.
func readHead(br *bufio.Reader) (rawAnswer, framing, error) {
	var a rawAnswer
	var fr framing
	for informational := 0; ; informational++ {
		line, err := readLine(br)
		if err != nil {
			return a, fr, err
		}
		var http10 bool
		a.status, http10, err = parseStatusLine(line)
		if err != nil {
			return a, fr, err
		}
		a.close = http10
		fr, a.replayed = framing{contentLen: -1}, false
		for n := 0; ; n++ {
			if n == rawHeaderLines {
				return a, fr, malformed("more than %d header lines", rawHeaderLines)
			}
			line, err := readLine(br)
			if err != nil {
				return a, fr, err
			}
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
				return a, fr, malformed("header line %.40q", line)
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				n, ok := parseLen(value)
				if !ok || (fr.contentLen >= 0 && n != fr.contentLen) {
					return a, fr, malformed("Content-Length %.40q", value)
				}
				fr.contentLen = n
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				if !bytes.EqualFold(value, []byte("chunked")) || fr.chunked {
					return a, fr, malformed("Transfer-Encoding %.40q not supported", value)
				}
				fr.chunked = true
			case bytes.EqualFold(name, []byte("Connection")):
				if hasToken(value, "close") {
					a.close = true
				}
			case bytes.EqualFold(name, []byte("Idempotent-Replayed")):
				a.replayed = string(value) == "true"
			}
		}
		if a.status >= 200 {
			return a, fr, nil
		}
		if a.status == 101 || informational == rawInformational {
			return a, fr, malformed("status %d", a.status)
		}
	}
}

// readLine reads one line, without its CRLF (or bare LF). A line longer
// than the read buffer is malformed.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, malformed("line longer than %d bytes", br.Size())
		}
		return nil, unexpected(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// unexpected turns an EOF in the middle of an answer into ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseStatusLine parses "HTTP/1.x SSS[ reason]".
func parseStatusLine(line []byte) (status int, http10 bool, err error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, false, malformed("status line %.40q", line)
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, false, malformed("status line %.40q", line)
		}
		status = status*10 + int(d-'0')
	}
	if status < 100 {
		return 0, false, malformed("status line %.40q", line)
	}
	return status, line[7] == '0', nil
}

// parseLen parses a decimal length of at most 18 digits.
func parseLen(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// hasToken reports whether a comma-separated header value holds tok (any case).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// readChunked reads a chunked body (RFC 9112 §7.1) into buf: chunk-size
// lines (extensions ignored), data, the last chunk and any trailers. A body
// over bodyLenMax is an error (the connection is then closed).
func readChunked(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return buf, err
		}
		sz, _, _ := bytes.Cut(line, []byte(";"))
		sz = bytes.TrimSpace(sz)
		if len(sz) == 0 || len(sz) > 8 {
			return buf, malformed("chunk size %.40q", line)
		}
		n, err := strconv.ParseUint(string(sz), 16, 32)
		if err != nil {
			return buf, malformed("chunk size %.40q", line)
		}
		if n == 0 {
			break
		}
		if int64(len(buf))+int64(n) > bodyLenMax {
			return buf, malformed("chunked body over %d bytes", bodyLenMax)
		}
		at := len(buf)
		buf = slices.Grow(buf, int(n))[:at+int(n)]
		if _, err := io.ReadFull(br, buf[at:]); err != nil {
			return buf[:at], fmt.Errorf("read chunk: %w", unexpected(err))
		}
		crlf, err := readLine(br)
		if err != nil {
			return buf, err
		}
		if len(crlf) != 0 {
			return buf, malformed("chunk not followed by CRLF")
		}
	}
	for n := 0; ; n++ { // trailers
		if n == rawHeaderLines {
			return buf, malformed("more than %d trailer lines", rawHeaderLines)
		}
		line, err := readLine(br)
		if err != nil {
			return buf, err
		}
		if len(line) == 0 {
			return buf, nil
		}
	}
}

// readUntilEOF reads a body delimited by the end of the connection, cut at
// bodyLenMax.
func readUntilEOF(br *bufio.Reader, buf []byte) ([]byte, error) {
	w := bytes.NewBuffer(buf)
	_, err := w.ReadFrom(io.LimitReader(br, bodyLenMax))
	return w.Bytes(), err
}
