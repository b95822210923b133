package httpapi

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// fieldName quotes a client-supplied key for a detail message, bounded.
func fieldName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// readBody reads the whole request body under the limit into buf and
// returns it. Over the limit it is errBodyTooLarge (413), and the server
// closes the connection instead of reading the rest; a body still arriving
// at the request's read deadline is errBodyTimeout (408).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, readError(err)
		}
	}
}

// readError classifies an error from reading a request body: over its cap
// (413), past the read deadline that the request's timeout set (408: the
// client sent too slowly), or cut off (400).
func readError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("%w: the limit is %d bytes", errBodyTooLarge, tooLarge.Limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: the body was still arriving at the request's deadline", errBodyTimeout)
	}
	return jsonwire.Malformed("reading the body: %v", err)
}

// idempotencyKey returns the request's single, valid Idempotency-Key.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header["Idempotency-Key"]
	switch {
	case len(vs) == 0:
		return "", errMissingKey
	case len(vs) > 1:
		return "", fmt.Errorf("%w (sent %d times)", hunt.ErrBadKey, len(vs))
	case !hunt.ValidKey(vs[0]):
		return "", hunt.ErrBadKey
	}
	return vs[0], nil
}

// query is a request's parsed query string with strict accessors: a
// parameter given twice, or out of its range, is an error.
type query struct{ v url.Values }

func parseQuery(r *http.Request) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, hunt.Invalid("query", "does not parse: %v", err)
	}
	return query{v}, nil
}

// get returns the parameter's single value, or "" and false if absent.
func (q query) get(name string) (string, bool, error) {
	vs := q.v[name]
	switch len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return vs[0], true, nil
	}
	return "", false, hunt.Invalid(name, "given more than once")
}

// int returns an integer parameter in [lo, hi], def when absent.
func (q query) int(name string, def, lo, hi int) (int, error) {
	s, ok, err := q.get(name)
	if err != nil || !ok {
		return def, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, hunt.Invalid(name, "must be an integer in [%d, %d]", lo, hi)
	}
	return n, nil
}

// float returns a finite number parameter in [lo, hi]; required ones must be present.
func (q query) float(name string, def, lo, hi float64, required bool) (float64, error) {
	s, ok, err := q.get(name)
	if err != nil {
		return 0, err
	}
	if !ok {
		if required {
			return 0, hunt.Invalid(name, "required")
		}
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		return 0, hunt.Invalid(name, "must be a number in [%g, %g]", lo, hi)
	}
	return f, nil
}

// after returns the after= consistency token, if any, checked against the
// engine's partition count (a token for a partition that does not exist
// would otherwise wait until the deadline).
func (q query) after(partitions int) (hunt.Epoch, bool, error) {
	s, ok, err := q.get("after")
	if err != nil || !ok {
		return hunt.Epoch{}, false, err
	}
	e, err := hunt.ParseConsistencyToken(s)
	if err != nil {
		return hunt.Epoch{}, false, err
	}
	if int(e.Partition) >= partitions {
		return hunt.Epoch{}, false, fmt.Errorf("%w: partition %d does not exist", hunt.ErrBadToken, e.Partition)
	}
	return e, true, nil
}

// validRegion reports whether s is a geohash prefix of 1..lenMax characters.
func validRegion(s string, lenMax int) bool {
	return len(s) <= lenMax && geo.ValidGeohash(s)
}
