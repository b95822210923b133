package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// TestProblemTable keeps the table consistent: one row per code, 4xx/5xx
// statuses, Retry-After exactly on 429 and 503, and wrapped errors found.
func TestProblemTable(t *testing.T) {
	codes := map[string]bool{}
	for _, row := range problemTable {
		p := row.p
		if codes[p.code] {
			t.Errorf("code %s appears twice", p.code)
		}
		codes[p.code] = true
		if p.status < 400 || p.status > 599 || p.title == "" {
			t.Errorf("row %s: status %d title %q", p.code, p.status, p.title)
		}
		if p.retry != (p.status == http.StatusTooManyRequests || p.status == http.StatusServiceUnavailable) {
			t.Errorf("row %s: status %d retry %v; Retry-After goes with 429 and 503", p.code, p.status, p.retry)
		}
		if got, ok := classify(fmt.Errorf("context: %w", row.err)); !ok || got != p {
			t.Errorf("classify(wrapped %v) = %+v; want %+v", row.err, got, p)
		}
	}
	for _, c := range []struct {
		err  error
		code string
	}{
		{hunt.Invalid("lat", "bad"), "invalid_request"},
		{&http.MaxBytesError{Limit: 1}, "body_too_large"},
		{&importError{index: 3, err: hunt.Invalid("id", "bad")}, "invalid_request"},
		{errors.Join(engine.ErrOverloaded), "overloaded"},
		{context.DeadlineExceeded, "timeout"},
		{errors.New("surprise"), "internal"},
	} {
		if got, _ := classify(c.err); got.code != c.code {
			t.Errorf("classify(%v) = %s; want %s", c.err, got.code, c.code)
		}
	}
	for o := hunt.Outcome(1); o.Valid(); o++ {
		p, ok := outcomeProblem(o)
		if ok == o.Effective() {
			t.Errorf("outcomeProblem(%v) ok = %v; want a problem exactly for refusals", o, ok)
		}
		if ok && (p.code != o.String() || p.detail == "" || (p.status != 409 && p.status != 422)) {
			t.Errorf("outcomeProblem(%v) = %+v", o, p)
		}
	}
}
