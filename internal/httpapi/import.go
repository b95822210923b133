package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// importHotspots answers POST /v1/admin/hunts/{hunt}/hotspots: a JSON array
// or NDJSON, streamed and upserted in chunks (see the package doc for what a
// bad item leaves behind). It runs under ImportTimeout and extends the
// connection's read and write deadlines to match, so a large import is not
// cut off by the server's ReadTimeout.
func (s *Server) importHotspots(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ImportTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	h, err := s.huntOf(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.cfg.ImportTimeout)
	// Errors mean the writer does not support deadlines (tests' recorders);
	// the context deadline still bounds the import.
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)

	body := http.MaxBytesReader(w, r.Body, s.cfg.ImportBodyLenMax)
	n, err := importStream(r.Header.Get("Content-Type"), body, func(chunk []hunt.Hotspot) error {
		for i := range chunk {
			chunk[i].Hunt = h.ID
		}
		return s.eng.ImportHotspots(ctx, h.ID, chunk)
	})
	if err != nil {
		s.writeError(w, r, err, func(dst []byte) []byte { return jsonwire.AppendIntField(dst, "imported", int64(n)) })
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Imported int `json:"imported"`
	}{n})
}

// hotspotFields are the members of an imported hotspot; the first four are required.
var hotspotFields = []string{"id", "lat", "lon", "tickets", "reward", "points", "opens_at", "closes_at"}

const hotspotRequired = 1<<0 | 1<<1 | 1<<2 | 1<<3

// importError names the bad item and what was imported before it.
type importError struct {
	index    int
	imported int
	err      error
}

func (e *importError) Error() string {
	return fmt.Sprintf("item %d: %v (the %d items before it were imported, none from it on)", e.index, e.err, e.imported)
}

func (e *importError) Unwrap() error { return e.err }

// putError marks a failure of put, so the import does not try it again.
type putError struct{ err error }

func (e *putError) Error() string { return e.err.Error() }
func (e *putError) Unwrap() error { return e.err }

// importStream decodes a hotspot import from body, a JSON array or NDJSON
// (contentType application/x-ndjson, or sniffed: '[' opens an array, '{' the
// first NDJSON line), normalizes every item, and passes them to put in chunks
// of at most engine.ImportBatchMax; put must not keep the slice. It returns
// how many items put accepted. When the body goes wrong at some point (a bad
// item, a syntax error, the size limit), the good items before that point
// are put first, so the count is exact and the client can resume there.
func importStream(contentType string, body io.Reader, put func([]hunt.Hotspot) error) (int, error) {
	br := bufio.NewReaderSize(body, ImportItemLenMax)
	// One chunk is put while the next is decoded (decoding is about half of
	// an import's CPU), so there are two buffers: chunk is being filled,
	// spare is the one being put, if any.
	chunk := make([]hunt.Hotspot, 0, engine.ImportBatchMax)
	spare := make([]hunt.Hotspot, 0, engine.ImportBatchMax)
	imported := 0
	var putting chan error // nil: no put running
	wait := func() error {
		if putting == nil {
			return nil
		}
		err := <-putting
		putting = nil
		if err != nil {
			return &putError{err}
		}
		imported += len(spare)
		return nil
	}
	flush := func() error {
		if err := wait(); err != nil {
			return err
		}
		if len(chunk) == 0 {
			return nil
		}
		chunk, spare = spare[:0], chunk
		done := make(chan error, 1)
		putting = done
		go func(c []hunt.Hotspot) { done <- put(c) }(spare)
		return nil
	}
	add := func(index int, raw []byte) error {
		var hs hunt.Hotspot
		err := jsonwire.DecodeHotspot(raw, &hs, hotspotFields, hotspotRequired)
		if err == nil {
			err = hs.Normalize()
		}
		if err != nil {
			return &importError{index: index, err: err}
		}
		chunk = append(chunk, hs)
		if len(chunk) == cap(chunk) {
			return flush()
		}
		return nil
	}
	first, err := firstByte(br)
	if err != nil {
		return 0, err
	}
	ndjson := false
	if mt, _, perr := mime.ParseMediaType(contentType); perr == nil && (mt == "application/x-ndjson" || mt == "application/jsonl") {
		ndjson = true
	} else {
		switch first {
		case '[':
		case '{':
			ndjson = true
		default:
			return 0, jsonwire.Malformed("the body must be a JSON array of hotspots or NDJSON (one hotspot object per line)")
		}
	}
	if ndjson {
		err = importLines(br, add)
	} else {
		err = importArray(br, add)
	}
	var pe *putError
	if errors.As(err, &pe) {
		return imported, pe.err // no put is running: the error came from waiting for it
	}
	// Success or a bad body: either way the items read so far are good.
	if ferr := flush(); ferr != nil {
		return imported, ferr.(*putError).err
	}
	if werr := wait(); werr != nil {
		return imported, werr.(*putError).err
	}
	var ie *importError
	if errors.As(err, &ie) {
		ie.imported = imported
	}
	return imported, err
}

// firstByte peeks at the first byte that is not white space.
func firstByte(br *bufio.Reader) (byte, error) {
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			return 0, jsonwire.Malformed("the body is empty; want a JSON array or NDJSON of hotspots")
		}
		if err != nil {
			return 0, readError(err)
		}
		if !jsonwire.IsSpace(c) {
			return c, br.UnreadByte()
		}
	}
}

// errItemTooLarge is an import item (an NDJSON line, an array element)
// longer than ImportItemLenMax.
var errItemTooLarge = errors.New("import item too large")

// itemTooLarge is the error of the item at index.
func itemTooLarge(index int) error {
	return &importError{index: index, err: fmt.Errorf("%w: longer than %d bytes (ImportItemLenMax)", errItemTooLarge, ImportItemLenMax)}
}

// importLines reads NDJSON: one object per line, blank lines skipped, each
// line at most ImportItemLenMax bytes.
func importLines(br *bufio.Reader, add func(int, []byte) error) error {
	index := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return itemTooLarge(index)
		}
		if err != nil && err != io.EOF {
			return readError(err)
		}
		if item := bytes.TrimSpace(line); len(item) > 0 {
			if aerr := add(index, item); aerr != nil {
				return aerr
			}
			index++
		}
		if err == io.EOF {
			return nil
		}
	}
}

// importArray reads one JSON array of objects, one element at a time: each
// element is scanned to its closing brace into a buffer of at most
// ImportItemLenMax bytes (the cap of an NDJSON line), so an element of any
// size costs no more memory than that; anything after the closing bracket
// is refused.
func importArray(br *bufio.Reader, add func(int, []byte) error) error {
	if c, err := br.ReadByte(); err != nil || c != '[' { // the '[' firstByte saw
		return jsonwire.Malformed("want a JSON array")
	}
	buf := make([]byte, 0, 4<<10)
	for index := 0; ; index++ {
		c, err := nextNonSpace(br)
		if err != nil {
			return &importError{index: index, err: err}
		}
		if c == ']' && index == 0 {
			break
		}
		if c != '{' {
			return &importError{index: index, err: jsonwire.Malformed("array element %d: want a hotspot object, found %q", index, c)}
		}
		if buf, err = scanObject(br, buf[:0], index); err != nil {
			return err
		}
		if err := add(index, buf); err != nil {
			return err
		}
		if c, err = nextNonSpace(br); err != nil {
			return &importError{index: index + 1, err: err}
		}
		if c == ']' {
			break
		}
		if c != ',' {
			return &importError{index: index + 1, err: jsonwire.Malformed("after array element %d: want ',' or ']', found %q", index, c)}
		}
	}
	if _, err := nextNonSpace(br); err != errArrayEnd {
		if err == nil {
			return jsonwire.Malformed("data after the closing bracket of the array")
		}
		return err
	}
	return nil
}

// errArrayEnd is nextNonSpace's end of the body (an error only inside the array).
var errArrayEnd = jsonwire.Malformed("the array ends early")

// nextNonSpace reads the next byte that is not JSON white space.
func nextNonSpace(br *bufio.Reader) (byte, error) {
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			return 0, errArrayEnd
		}
		if err != nil {
			return 0, readError(err)
		}
		if !jsonwire.IsSpace(c) {
			return c, nil
		}
	}
}

// scanObject appends to buf the object whose '{' was just read, up to its
// matching '}', following strings and nesting only as far as needed to find
// that end; the item's decoder checks the rest. More than ImportItemLenMax
// bytes is errItemTooLarge, found after reading at most that many.
func scanObject(br *bufio.Reader, buf []byte, index int) ([]byte, error) {
	buf = append(buf, '{')
	depth, inString, escaped := 1, false, false
	for depth > 0 {
		if len(buf) >= ImportItemLenMax {
			return nil, itemTooLarge(index)
		}
		c, err := br.ReadByte()
		if err == io.EOF {
			return nil, &importError{index: index, err: errArrayEnd}
		}
		if err != nil {
			return nil, &importError{index: index, err: readError(err)}
		}
		buf = append(buf, c)
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return buf, nil
}
