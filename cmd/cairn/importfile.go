package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/cairnhq/cairn/internal/httpapi"
)

// The formats `cairn import` reads, each turned into a stream of hotspot
// objects (one compact JSON object each), which it sends as NDJSON. Every
// reader holds one item at a time: a file of any size is streamed, and an
// item longer than the server's per-item limit (httpapi.ImportItemLenMax)
// is refused before it is read whole.

// Import file formats (--format).
const (
	formatAuto   = "auto"
	formatNDJSON = "ndjson"
	formatJSON   = "json"
	formatCSV    = "csv"
)

// errBadFile marks a problem with the file's content (exit 1, nothing sent
// from the bad item on).
var errBadFile = errors.New("bad file")

// itemReader yields one hotspot object at a time; next returns io.EOF at
// the end. The slice is valid until the next call. line is the file line
// the item starts on, for messages.
type itemReader interface {
	next() (item []byte, line int, err error)
}

// badItem is an error in the file at a line.
func badItem(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", errBadFile, line, fmt.Sprintf(format, args...))
}

// newItemReader picks the reader for format (formatAuto: by the file name's
// extension, else by the first byte that is not white space: '[' a JSON
// array, '{' NDJSON, anything else CSV). It returns the format chosen.
func newItemReader(format, name string, br *bufio.Reader) (itemReader, string, error) {
	if format == formatAuto {
		switch lower := strings.ToLower(name); {
		case strings.HasSuffix(lower, ".ndjson"), strings.HasSuffix(lower, ".jsonl"):
			format = formatNDJSON
		case strings.HasSuffix(lower, ".csv"):
			format = formatCSV
		default:
			c, err := peekNonSpace(br)
			if err != nil {
				return nil, "", err
			}
			switch c {
			case '[':
				format = formatJSON
			case '{':
				format = formatNDJSON
			default:
				format = formatCSV
			}
		}
	}
	switch format {
	case formatNDJSON:
		return &ndjsonReader{lines: lineReader{br: br}}, format, nil
	case formatJSON:
		r := &arrayReader{br: br, line: 1}
		return r, format, r.open()
	case formatCSV:
		r := &csvReader{lines: lineReader{br: br}}
		return r, format, r.header()
	}
	return nil, "", fmt.Errorf("--format %q: want %s, %s, %s or %s", format, formatAuto, formatNDJSON, formatJSON, formatCSV)
}

// peekNonSpace returns the first byte that is not white space without
// consuming anything.
func peekNonSpace(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			if err == nil || err == io.EOF || errors.Is(err, bufio.ErrBufferFull) {
				return 0, fmt.Errorf("%w: no hotspot in it (empty, or white space only)", errBadFile)
			}
			return 0, err
		}
		if c := b[n-1]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c, nil
		}
	}
}

// importBufLen is the file reader's buffer: one line of the longest item
// the server takes, and its end.
const importBufLen = httpapi.ImportItemLenMax + 2

// lineReader reads lines of at most httpapi.ImportItemLenMax bytes from a
// reader of importBufLen bytes.
type lineReader struct {
	br   *bufio.Reader
	line int
}

// next returns the next line without its end, or io.EOF.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.br.ReadSlice('\n')
	l.line++
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, badItem(l.line, "longer than %d bytes, the server's limit for one hotspot", httpapi.ImportItemLenMax)
	}
	if err == io.EOF && len(line) == 0 {
		return nil, io.EOF
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) > httpapi.ImportItemLenMax {
		return nil, badItem(l.line, "longer than %d bytes, the server's limit for one hotspot", httpapi.ImportItemLenMax)
	}
	return line, nil
}

// ndjsonReader reads one object per line; blank lines are skipped.
type ndjsonReader struct{ lines lineReader }

func (r *ndjsonReader) next() ([]byte, int, error) {
	for {
		line, err := r.lines.next()
		if err != nil {
			return nil, r.lines.line, err
		}
		item := bytes.TrimSpace(line)
		if len(item) == 0 {
			continue
		}
		if item[0] != '{' || !json.Valid(item) {
			return nil, r.lines.line, badItem(r.lines.line, "not a JSON object: %.80q", item)
		}
		return item, r.lines.line, nil
	}
}

// arrayReader reads one JSON array of objects, element by element, with a
// small scanner that finds each element's end (strings and nesting) so
// that no element longer than the limit is held, then compacts it to one
// line.
type arrayReader struct {
	br   *bufio.Reader
	line int
	buf  []byte
	out  []byte
	done bool
	n    int // elements read
}

func (r *arrayReader) readByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err == io.EOF {
		return 0, fmt.Errorf("%w: the JSON array ends early (line %d)", errBadFile, r.line)
	}
	if c == '\n' {
		r.line++
	}
	return c, err
}

// skipSpace returns the next byte that is not white space.
func (r *arrayReader) skipSpace() (byte, error) {
	for {
		c, err := r.readByte()
		if err != nil {
			return 0, err
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c, nil
		}
	}
}

func (r *arrayReader) open() error {
	c, err := r.skipSpace()
	if err != nil {
		return err
	}
	if c != '[' {
		return badItem(r.line, "a JSON array must start with '[', not %q", c)
	}
	return nil
}

func (r *arrayReader) next() ([]byte, int, error) {
	if r.done {
		return nil, r.line, io.EOF
	}
	c, err := r.skipSpace()
	if err != nil {
		return nil, r.line, err
	}
	if r.n > 0 {
		switch c {
		case ']':
			return nil, r.line, r.end()
		case ',':
			if c, err = r.skipSpace(); err != nil {
				return nil, r.line, err
			}
		default:
			return nil, r.line, badItem(r.line, "want ',' or ']' after element %d, not %q", r.n, c)
		}
	} else if c == ']' {
		return nil, r.line, r.end()
	}
	start := r.line
	if c != '{' {
		return nil, start, badItem(start, "element %d is not a JSON object (starts with %q)", r.n, c)
	}
	r.buf = append(r.buf[:0], c)
	depth, inString, escaped := 1, false, false
	for depth > 0 {
		if c, err = r.readByte(); err != nil {
			return nil, start, err
		}
		r.buf = append(r.buf, c)
		if len(r.buf) > httpapi.ImportItemLenMax {
			return nil, start, badItem(start, "element %d is longer than %d bytes, the server's limit for one hotspot", r.n, httpapi.ImportItemLenMax)
		}
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	r.out = r.out[:0]
	var out bytes.Buffer
	if err := json.Compact(&out, r.buf); err != nil {
		return nil, start, badItem(start, "element %d: %v", r.n, err)
	}
	r.out = append(r.out, out.Bytes()...)
	r.n++
	return r.out, start, nil
}

// end checks that nothing but white space follows the closing bracket.
func (r *arrayReader) end() error {
	r.done = true
	for {
		c, err := r.br.ReadByte()
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return err
		}
		if c == '\n' {
			r.line++
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return badItem(r.line, "data after the closing bracket of the array")
		}
	}
}

// csvReader reads a header line naming the columns (those of a hotspot:
// id, lat, lon, tickets required; reward, points, opens_at, closes_at
// optional; in any order) and one hotspot per line. An empty optional cell
// is left out. Fields may be quoted, but a field may not span lines.
type csvReader struct {
	lines lineReader
	cols  []csvColumn
	out   []byte
}

type csvColumn struct {
	name string
	kind byte // 's' string, 'f' float, 'i' integer
}

var csvColumns = map[string]byte{
	"id": 's', "lat": 'f', "lon": 'f', "tickets": 'i', "reward": 'i', "points": 'i', "opens_at": 's', "closes_at": 's',
}

var csvRequired = []string{"id", "lat", "lon", "tickets"}

func (r *csvReader) record() ([]string, error) {
	for {
		line, err := r.lines.next()
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		cr := csv.NewReader(bytes.NewReader(line))
		cr.TrimLeadingSpace = true
		rec, err := cr.Read()
		if err != nil {
			return nil, badItem(r.lines.line, "%v", err)
		}
		return rec, nil
	}
}

func (r *csvReader) header() error {
	rec, err := r.record()
	if err == io.EOF {
		return fmt.Errorf("%w: no header line", errBadFile)
	}
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, name := range rec {
		name = strings.ToLower(strings.TrimSpace(name))
		kind, ok := csvColumns[name]
		if !ok {
			return badItem(r.lines.line, "unknown column %q in the header (want id, lat, lon, tickets, reward, points, opens_at, closes_at)", name)
		}
		if seen[name] {
			return badItem(r.lines.line, "column %q twice in the header", name)
		}
		seen[name] = true
		r.cols = append(r.cols, csvColumn{name, kind})
	}
	for _, name := range csvRequired {
		if !seen[name] {
			return badItem(r.lines.line, "the header has no %q column (id, lat, lon and tickets are required)", name)
		}
	}
	return nil
}

func (r *csvReader) next() ([]byte, int, error) {
	rec, err := r.record()
	line := r.lines.line
	if err != nil {
		return nil, line, err
	}
	if len(rec) != len(r.cols) {
		return nil, line, badItem(line, "%d fields; the header has %d", len(rec), len(r.cols))
	}
	b := append(r.out[:0], '{')
	for i, c := range r.cols {
		v := strings.TrimSpace(rec[i])
		if v == "" {
			if c.name == "id" || c.name == "lat" || c.name == "lon" || c.name == "tickets" {
				return nil, line, badItem(line, "%s is empty", c.name)
			}
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, c.name...) // a known column: plain ASCII
		b = append(b, '"', ':')
		switch c.kind {
		case 's':
			js, _ := json.Marshal(v) // a string always marshals
			b = append(b, js...)
		case 'f':
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, line, badItem(line, "%s %q is not a number", c.name, v)
			}
			b = strconv.AppendFloat(b, f, 'g', -1, 64)
		case 'i':
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, line, badItem(line, "%s %q is not an integer", c.name, v)
			}
			b = strconv.AppendInt(b, n, 10)
		}
	}
	b = append(b, '}')
	r.out = b
	return b, line, nil
}
