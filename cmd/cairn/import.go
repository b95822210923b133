package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

const importUsage = `usage: cairn import --target URL --hunt H [flags] FILE

Streams a file of hotspots to a server's admin import endpoint
(POST /v1/admin/hunts/H/hotspots) as NDJSON, in requests of at most
--hotspots-per-request hotspots, reading the file as it goes (any size). The
hunt must exist. An import is an upsert: running it again is safe (tickets are
never lowered below what is granted).

FILE (or - for standard input) is NDJSON (one hotspot object per line), a JSON
array of hotspot objects, or CSV with a header line naming the columns (id,
lat, lon, tickets required; reward, points, opens_at, closes_at optional).
--format auto picks by the extension (.ndjson/.jsonl, .csv), else by the first
character ('[' array, '{' NDJSON, else CSV).

On a terminal it shows a progress line (hotspots/s, bytes, percentage, ETA);
it always ends with one summary line (--json: one JSON object).

The admin token is --admin-token, else CAIRN_ADMIN_TOKEN, else
<data>/secrets.env (prefer the environment: a flag shows in the process list).

Exit status: 0 every hotspot imported; 1 the import stopped (a bad line in the
file, or the server refused it: the message has the server's problem detail
and how many hotspots were imported before); 2 usage; 3 the server could not
be reached (nothing sent).

  cairn import --target http://127.0.0.1:8080 --hunt paris hotspots.ndjson
  scripts/gen-hotspots.py 1000000 | cairn import --hunt paris --format ndjson -

flags:
`

// importPerRequestDefault is --hotspots-per-request's default: about 50 MB of
// NDJSON, well under the server's default body limit of 256 MiB.
const importPerRequestDefault = 500_000

// importProgressEvery is how often the progress line is redrawn.
const importProgressEvery = 250 * time.Millisecond

// importDialTimeout bounds connecting to the server.
const importDialTimeout = 10 * time.Second

// exitError carries a process exit status other than 1 (see run).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// importExitUnreachable is the exit status when the server cannot be reached.
const importExitUnreachable = 3

// importResult is the summary (--json prints it).
type importResult struct {
	OK           bool    `json:"ok"`
	Hunt         string  `json:"hunt"`
	File         string  `json:"file"`
	Format       string  `json:"format"`
	Imported     int64   `json:"imported"`
	Bytes        int64   `json:"bytes"`
	Requests     int     `json:"requests"`
	ElapsedS     float64 `json:"elapsed_s"`
	HotspotsPerS float64 `json:"hotspots_per_s"`
	Error        string  `json:"error,omitempty"`
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage); fs.PrintDefaults() }
	target := fs.String("target", "http://127.0.0.1:8080", "base URL of the server (http or https)")
	huntID := fs.String("hunt", "", "the hunt to import into (required; it must exist)")
	token := fs.String("admin-token", "", "admin token (default: CAIRN_ADMIN_TOKEN, else <data>/secrets.env)")
	dataDir := fs.String("data", envOr("CAIRN_DATA", "./cairn-data"), "data directory holding secrets.env, when no token is given otherwise")
	format := fs.String("format", formatAuto, "auto, ndjson, json (an array) or csv")
	perRequest := fs.Int("hotspots-per-request", importPerRequestDefault, "hotspots sent in one request at most")
	timeout := fs.Duration("request-timeout", 15*time.Minute, "bound on one request (sending it and the server's import)")
	jsonOut := fs.Bool("json", false, "print the summary as one JSON object (and no progress line)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var problems []string
	if *huntID == "" {
		problems = append(problems, "--hunt is required")
	}
	if fs.NArg() != 1 {
		problems = append(problems, fmt.Sprintf("want exactly one FILE (or -), got %d arguments", fs.NArg()))
	}
	if *perRequest <= 0 {
		problems = append(problems, fmt.Sprintf("--hotspots-per-request %d: want 1 or more", *perRequest))
	}
	if *timeout <= 0 {
		problems = append(problems, fmt.Sprintf("--request-timeout %v: want more than 0", *timeout))
	}
	base, err := url.Parse(*target)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		problems = append(problems, fmt.Sprintf("--target %q: want an http:// or https:// URL", *target))
	}
	switch *format {
	case formatAuto, formatNDJSON, formatJSON, formatCSV:
	default:
		problems = append(problems, fmt.Sprintf("--format %q: want auto, ndjson, json or csv", *format))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "cairn import: %s\n", p)
		}
		return errUsage
	}
	admin, err := importAdminToken(*token, *dataDir)
	if err != nil {
		return err
	}

	name := fs.Arg(0)
	in, size, err := openImportFile(name)
	if err != nil {
		return err
	}
	defer in.Close()

	im := &importer{
		client:     &http.Client{Transport: importTransport()},
		endpoint:   strings.TrimRight(base.String(), "/") + "/v1/admin/hunts/" + url.PathEscape(*huntID) + "/hotspots",
		admin:      admin,
		perRequest: *perRequest,
		timeout:    *timeout,
		size:       size,
		file:       &countingReader{r: in},
	}
	res := importResult{Hunt: *huntID, File: name}
	start := time.Now()
	stopProgress := func() {}
	if !*jsonOut && isTerminal(stderr) {
		stopProgress = im.showProgress(ctx, stderr, name, start)
	}
	err = im.run(ctx, *format, name, &res)
	stopProgress()

	res.Imported, res.Bytes = im.imported, im.file.n.Load()
	res.ElapsedS = time.Since(start).Seconds()
	if res.ElapsedS > 0 {
		res.HotspotsPerS = float64(res.Imported) / res.ElapsedS
	}
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	if *jsonOut {
		if jerr := json.NewEncoder(stdout).Encode(res); jerr != nil && err == nil {
			err = jerr
		}
	} else if err == nil {
		fmt.Fprintf(stdout, "imported %d hotspots into hunt %s from %s (%s, %s, %d request%s) in %.2f s: %.0f hotspots/s\n",
			res.Imported, res.Hunt, name, res.Format, mib(res.Bytes), res.Requests, map[bool]string{true: "", false: "s"}[res.Requests == 1], res.ElapsedS, res.HotspotsPerS)
	}
	return err
}

// importAdminToken is the flag's token, else CAIRN_ADMIN_TOKEN, else the
// one in <data>/secrets.env.
func importAdminToken(flagToken, dataDir string) (string, error) {
	if flagToken != "" {
		return flagToken, nil
	}
	if t := os.Getenv("CAIRN_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	f, err := readSecretsFile(filepath.Join(dataDir, secretsFile))
	if err != nil {
		return "", fmt.Errorf("no admin token: give --admin-token, set CAIRN_ADMIN_TOKEN, or point --data at the server's data directory (%w)", err)
	}
	admin := f.adminToken
	if admin == "" {
		return "", fmt.Errorf("no admin token: %s has none; give --admin-token or set CAIRN_ADMIN_TOKEN", filepath.Join(dataDir, secretsFile))
	}
	return admin, nil
}

// openImportFile opens name (- is standard input) and returns its size, or
// -1 when it has none (a pipe).
func openImportFile(name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errBadFile, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%w: %v", errBadFile, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, 0, fmt.Errorf("%w: %s is a directory", errBadFile, name)
	}
	if !fi.Mode().IsRegular() {
		return f, -1, nil
	}
	return f, fi.Size(), nil
}

func importTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: importDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// countingReader counts the bytes read through it (read by the progress line).
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// importer sends one file in requests.
type importer struct {
	client     *http.Client
	endpoint   string
	admin      string
	perRequest int
	timeout    time.Duration
	size       int64 // of the file; -1 unknown
	file       *countingReader

	sent      atomic.Int64 // hotspots handed to the transport
	imported  int64        // hotspots the server confirmed (run's own)
	confirmed atomic.Int64 // the same, for the progress line
}

func (im *importer) run(ctx context.Context, format, name string, res *importResult) error {
	items, chosen, err := newItemReader(format, name, bufio.NewReaderSize(im.file, importBufLen))
	res.Format = chosen
	if err != nil {
		return err
	}
	for first := true; ; first = false {
		body := &importBody{items: items, max: im.perRequest, sent: &im.sent}
		if !body.prime() {
			switch {
			case body.err != nil:
				return fmt.Errorf("%w (the %d hotspots before it were imported; nothing from it on)", body.err, im.imported)
			case first:
				return fmt.Errorf("%w: no hotspot in %s", errBadFile, name)
			}
			return nil
		}
		n, err := im.send(ctx, body)
		if n > 0 || err == nil {
			res.Requests++
		}
		im.imported += n
		im.confirmed.Store(im.imported)
		if err != nil {
			return err
		}
		if body.err != nil {
			return fmt.Errorf("%w (the %d hotspots before it were imported; nothing from it on)", body.err, im.imported)
		}
		if body.eof {
			return nil
		}
	}
}

// send makes one request whose body is body and returns how many hotspots
// the server imported.
func (im *importer) send(ctx context.Context, body *importBody) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, im.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, im.endpoint, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = -1 // chunked: the body is produced as the file is read
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+im.admin)
	resp, err := im.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return 0, &exitError{importExitUnreachable, fmt.Errorf("cannot reach %s (nothing was sent by this request): %w", im.endpoint, err)}
		}
		return 0, fmt.Errorf("the request to %s failed after %d hotspots were sent in all, %d of them confirmed imported: %w (an import is an upsert: running it again is safe)",
			im.endpoint, im.sent.Load(), im.imported, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("reading the answer of %s: %w", im.endpoint, err)
	}
	var ans struct {
		Imported *int64 `json:"imported"`
		Type     string `json:"type"`
		Title    string `json:"title"`
		Detail   string `json:"detail"`
	}
	jerr := json.Unmarshal(raw, &ans)
	if resp.StatusCode == http.StatusOK && jerr == nil && ans.Imported != nil {
		if *ans.Imported != body.n {
			return *ans.Imported, fmt.Errorf("the server imported %d hotspots of the %d sent in one request", *ans.Imported, body.n)
		}
		return *ans.Imported, nil
	}
	var n int64
	if ans.Imported != nil {
		n = *ans.Imported
	}
	before := "nothing imported"
	if total := im.imported + n; total > 0 {
		before = fmt.Sprintf("%d hotspots imported before it", total)
	}
	if jerr != nil || ans.Title == "" {
		return n, fmt.Errorf("the server answered %s: %.300q (%s)", resp.Status, raw, before)
	}
	hint := ""
	if resp.StatusCode == http.StatusNotFound {
		hint = "; create the hunt first (PUT /v1/admin/hunts/{hunt})"
	}
	return n, fmt.Errorf("the server refused the import: %d %s: %s (%s)%s", resp.StatusCode, ans.Title, ans.Detail, before, hint)
}

// showProgress redraws a progress line on w until the returned stop is called.
func (im *importer) showProgress(ctx context.Context, w io.Writer, name string, start time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(importProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fmt.Fprint(w, "\r\x1b[2K")
				return
			case <-t.C:
				fmt.Fprint(w, "\r\x1b[2K"+im.progressLine(name, time.Since(start)))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// progressLine is the live line: hotspots sent and their rate, bytes read,
// and (for a file of known size) the percentage and ETA.
func (im *importer) progressLine(name string, elapsed time.Duration) string {
	sent, read := im.sent.Load(), im.file.n.Load()
	secs := max(elapsed.Seconds(), 1e-3)
	s := fmt.Sprintf("importing %s: %d hotspots sent (%d confirmed), %.0f/s, %s",
		name, sent, im.confirmed.Load(), float64(sent)/secs, mib(read))
	if im.size > 0 {
		pct := 100 * float64(read) / float64(im.size)
		s += fmt.Sprintf(" of %s (%.1f %%)", mib(im.size), pct)
		if read > 0 && read < im.size {
			eta := time.Duration(float64(im.size-read) / (float64(read) / secs) * float64(time.Second))
			s += fmt.Sprintf(", ETA %s", eta.Round(time.Second))
		}
	}
	return s
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// importBody is one request's body: NDJSON of at most max items from items.
// A bad item ends the body cleanly (err says why), so the server imports
// and counts everything before it.
type importBody struct {
	items itemReader
	max   int
	sent  *atomic.Int64
	line  []byte // the current item and its newline
	off   int    // of line, already read
	n     int64  // items in this body
	eof   bool   // the file ended
	err   error  // the file went wrong here
}

// fill loads the next item into line; false at the end of the body.
func (b *importBody) fill() bool {
	if b.eof || b.err != nil || b.n == int64(b.max) {
		return false
	}
	item, _, err := b.items.next()
	if err == io.EOF {
		b.eof = true
		return false
	}
	if err != nil {
		b.err = err
		return false
	}
	b.line = append(append(b.line[:0], item...), '\n')
	b.off = 0
	b.n++
	b.sent.Add(1)
	return true
}

// prime loads the first item, so no request is made for an empty body; it
// reports whether there is one.
func (b *importBody) prime() bool { return b.fill() }

// Read fills p with as many items as fit, so the chunks on the wire are as
// large as the transport's buffer, not one per hotspot.
func (b *importBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if b.off == len(b.line) && !b.fill() {
			break
		}
		c := copy(p[n:], b.line[b.off:])
		b.off += c
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
