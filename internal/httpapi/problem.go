package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// problemBase prefixes every problem type URI: the type of code c is problemBase+c.
const problemBase = "https://cairn.dev/problems/"

// problemType is one row of the table: an HTTP status, a stable machine code
// (the last segment of the type URI, also sent as the `code` member) and a
// human title. retry marks answers that carry Retry-After.
type problemType struct {
	status int
	code   string
	title  string
	retry  bool
}

// Errors of the HTTP layer itself; the engine's and the domain's are in their packages.
var (
	errUnauthorized       = errors.New("missing or invalid bearer credentials")
	errBodyTooLarge       = errors.New("request body too large")
	errBodyTimeout        = errors.New("request body too slow")
	errMissingKey         = errors.New("Idempotency-Key header is required")
	errNotFound           = errors.New("no such resource")
	errMethodNotAllowed   = errors.New("method not allowed on this resource")
	errNotCaughtUp        = errors.New("the read did not catch up with the consistency token in time")
	errTooManySubscribers = errors.New("too many event stream subscribers")
	errTooManyStreams     = errors.New("too many event streams")
	errNotReady           = errors.New("not ready")
	errViolated           = errors.New("an invariant is violated")
)

// problemTable is THE table from error to problem (STYLE habit 3): the first
// row whose error matches (errors.Is) wins, so specific errors come before
// the ones they wrap. An error that matches no row is a 500 `internal`.
// The codes are stable: clients branch on them, docs list them.
var problemTable = [...]struct {
	err error
	p   problemType
}{
	{errUnauthorized, problemType{http.StatusUnauthorized, "unauthorized", "Unauthorized", false}},
	{errMissingKey, problemType{http.StatusBadRequest, "missing_idempotency_key", "Missing Idempotency-Key", false}},
	{hunt.ErrBadKey, problemType{http.StatusBadRequest, "bad_idempotency_key", "Bad Idempotency-Key", false}},
	{hunt.ErrBadToken, problemType{http.StatusBadRequest, "bad_consistency_token", "Bad consistency token", false}},
	{jsonwire.ErrMalformed, problemType{http.StatusBadRequest, "malformed_json", "Malformed JSON", false}},
	{hunt.ErrInvalid, problemType{http.StatusBadRequest, "invalid_request", "Invalid request", false}},
	{errBodyTimeout, problemType{http.StatusRequestTimeout, "body_timeout", "Request body too slow", false}},
	{errBodyTooLarge, problemType{http.StatusRequestEntityTooLarge, "body_too_large", "Request body too large", false}},
	{errItemTooLarge, problemType{http.StatusRequestEntityTooLarge, "item_too_large", "Import item too large", false}},
	{hunt.ErrUnknownHunt, problemType{http.StatusNotFound, "unknown_hunt", "Unknown hunt", false}},
	{hunt.ErrUnknownHotspot, problemType{http.StatusNotFound, "unknown_hotspot", "Unknown hotspot", false}},
	{errNotFound, problemType{http.StatusNotFound, "not_found", "Not found", false}},
	{errMethodNotAllowed, problemType{http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed", false}},
	{errViolated, problemType{http.StatusConflict, "invariant_violated", "Invariant violated", false}},
	{hunt.ErrKeyReused, problemType{http.StatusUnprocessableEntity, "idempotency_key_reused", "Idempotency-Key reused", false}},
	{errTooManyStreams, problemType{http.StatusTooManyRequests, "too_many_streams", "Too many streams", true}},
	{engine.ErrNotSupported, problemType{http.StatusNotImplemented, "not_supported", "Not supported by this store", false}},
	{engine.ErrOverloaded, problemType{http.StatusTooManyRequests, "overloaded", "Overloaded", true}},
	{engine.ErrUnavailable, problemType{http.StatusServiceUnavailable, "unavailable", "Unavailable", true}},
	{engine.ErrClosed, problemType{http.StatusServiceUnavailable, "shutting_down", "Shutting down", true}},
	{errNotCaughtUp, problemType{http.StatusServiceUnavailable, "not_caught_up", "Not caught up", true}},
	{errTooManySubscribers, problemType{http.StatusServiceUnavailable, "too_many_subscribers", "Too many subscribers", true}},
	{errNotReady, problemType{http.StatusServiceUnavailable, "not_ready", "Not ready", true}},
	{context.DeadlineExceeded, problemType{http.StatusServiceUnavailable, "timeout", "Timeout", true}},
	{context.Canceled, problemType{http.StatusServiceUnavailable, "canceled", "Canceled", true}},
}

var problemInternal = problemType{http.StatusInternalServerError, "internal", "Internal error", false}

// classify finds the problem of err in the table.
func classify(err error) (problemType, bool) {
	for i := range problemTable {
		if errors.Is(err, problemTable[i].err) {
			return problemTable[i].p, true
		}
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return classify(errBodyTooLarge)
	}
	return problemInternal, false
}

// outcomeProblem is the part of the table for decided claims and spends that
// were refused: the status, a code equal to the outcome's name, and a fixed
// detail (fixed, so a replay is byte-identical).
type outcomeRow struct {
	problemType
	detail string
}

func outcomeProblem(o hunt.Outcome) (outcomeRow, bool) {
	switch o {
	case hunt.AlreadyClaimed:
		return outcomeRow{problemType{http.StatusConflict, o.String(), "Already claimed", false},
			"this player already holds a ticket of this hotspot"}, true
	case hunt.SoldOut:
		return outcomeRow{problemType{http.StatusConflict, o.String(), "Sold out", false},
			"this hotspot has no tickets left"}, true
	case hunt.InsufficientFunds:
		return outcomeRow{problemType{http.StatusConflict, o.String(), "Insufficient funds", false},
			"the wallet's balance is lower than the amount"}, true
	case hunt.TooFar:
		return outcomeRow{problemType{http.StatusUnprocessableEntity, o.String(), "Too far", false},
			"the claim was made farther from the hotspot than the hunt's claim radius"}, true
	case hunt.NotOpen:
		return outcomeRow{problemType{http.StatusUnprocessableEntity, o.String(), "Not open", false},
			"the hunt or the hotspot is not open at this time"}, true
	case hunt.ImplausibleMovement:
		return outcomeRow{problemType{http.StatusUnprocessableEntity, o.String(), "Implausible movement", false},
			"the distance from this player's last claim implies an implausible speed"}, true
	}
	return outcomeRow{}, false
}

// Content types. The header values are shared read-only slices, so setting
// them costs no allocation on the claim path; nothing appends to them in place.
var (
	ctJSON        = []string{"application/json"}
	ctProblem     = []string{"application/problem+json"}
	hdrTrue       = []string{"true"}
	hdrNoStore    = []string{"no-store"}
	hdrRetryAfter = []string{strconv.Itoa(int((engine.RetryAfter + 999_999_999) / 1e9))}
	hdrBearer     = []string{`Bearer realm="cairn"`}
	hdrBadBearer  = []string{`Bearer realm="cairn", error="invalid_token"`}
)

// problemExt appends extension members to a problem document (each starting
// with jsonwire.AppendKey). It may be nil.
type problemExt func(dst []byte) []byte

// writeProblem writes a problem document with status and headers of p.
func writeProblem(w http.ResponseWriter, p problemType, detail string, ext problemExt) {
	h := w.Header()
	h["Content-Type"] = ctProblem
	h["Cache-Control"] = hdrNoStore
	if p.retry {
		h["Retry-After"] = hdrRetryAfter
	}
	if p.status == http.StatusUnauthorized && h["Www-Authenticate"] == nil {
		h["Www-Authenticate"] = hdrBearer
	}
	b := appendProblemHead(make([]byte, 0, 256), p, detail)
	if ext != nil {
		b = ext(b)
	}
	b = append(b, '}', '\n')
	w.WriteHeader(p.status)
	_, _ = w.Write(b)
}

// writeError answers err as its problem. 4xx details are the error's own
// message (they describe the request, never the server); 5xx details are the
// table's title, and an unexpected error is logged, never shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, ext problemExt) {
	p, known := classify(err)
	detail := err.Error()
	if ae, ok := errors.AsType[*authError](err); ok && ae.invalid {
		w.Header()["Www-Authenticate"] = hdrBadBearer
	}
	switch {
	case !known:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		detail = "internal error; the server log has the details"
	case p.status >= 500:
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request shed", slog.String("path", r.URL.Path), slog.Any("err", err))
		detail = shedDetail(p.code)
	}
	switch p.code {
	case "timeout":
		s.shedTimeout.Inc()
	case "not_caught_up":
		s.shedNotCaughtUp.Inc()
	case "too_many_subscribers":
		s.shedSubscribers.Inc()
	case "too_many_streams":
		s.shedStreams.Inc()
	}
	s.countError(p.status)
	writeProblem(w, p, detail, ext)
}

// errorCounters resolves cairn_http_errors_total{status} once for every
// status an error answer can have, so counting one is a map read.
func errorCounters(v *prometheus.CounterVec) map[int]prometheus.Counter {
	m := map[int]prometheus.Counter{}
	add := func(status int) {
		if m[status] == nil {
			m[status] = v.WithLabelValues(strconv.Itoa(status))
		}
	}
	for _, row := range problemTable {
		add(row.p.status)
	}
	add(problemInternal.status)
	add(problemRateLimited.status)
	return m
}

// countError counts one error answer of status (the map is read-only once built).
func (s *Server) countError(status int) {
	if c := s.errorCount[status]; c != nil {
		c.Inc()
	}
}

// shedDetail is the fixed detail of a 5xx, so no internal error text leaks.
func shedDetail(code string) string {
	switch code {
	case "unavailable":
		return "the store cannot commit right now; nothing was recorded; retry later"
	case "shutting_down":
		return "the server is shutting down; retry on another node or later"
	case "not_caught_up":
		return "the read did not reach the consistency token in time; retry later"
	case "too_many_subscribers":
		return "the server has as many event stream subscribers as it allows; retry later"
	case "not_ready":
		return "the engine does not accept claims now"
	case "timeout":
		return "the request did not finish in time; its outcome is unknown: retry with the same Idempotency-Key"
	case "canceled":
		return "the request was canceled"
	}
	return "service unavailable"
}
