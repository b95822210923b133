package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// opKind is what a request does; each kind has its own latency histogram.
type opKind uint8

const (
	opClaim opKind = iota
	opRetry
	opLeaderboard
	opWallet
	opSpend
	opKinds
)

var opNames = [opKinds]string{"claim", "retry", "leaderboard", "wallet", "spend"}

// request is one HTTP exchange, built completely by a planner before its
// send time so the send itself does no planning.
type request struct {
	kind   opKind
	method string
	path   string // below the target's prefix, query included; visible ASCII only
	auth   []byte // the player's pre-rendered "Authorization: Bearer ...\r\n" line (shared, read-only)
	key    string // Idempotency-Key; "" for reads
	accept string // Accept header; "" for none
	body   []byte
	// pair is set for requests that are sent twice (replays, retries): the
	// second answer must repeat the first (I3).
	pair *pair
	side int
	// done, if set, sees a decided answer (claims keep their consistency token).
	done func(status int, parsed *answer)
}

// label names a response as "<status> <outcome>", e.g. "201 granted",
// "409 sold_out", "200 leaderboard", "429 overloaded".
func label(kind opKind, status int, a *answer) string {
	var what string
	switch {
	case a.Outcome != "":
		what = a.Outcome
	case a.Code != "":
		what = a.Code
	case a.Type != "" && a.Type != "about:blank":
		what = a.Type[strings.LastIndexByte(a.Type, '/')+1:]
	case status < 300:
		what = opNames[kind]
	default:
		what = strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
	}
	return strconv.Itoa(status) + " " + what
}

// decided reports whether a status is a decision the server would repeat for
// a retry. 429 and 5xx are refusals (nothing was recorded), 0 is no answer.
func decided(status int) bool {
	return status != 0 && status != http.StatusTooManyRequests && status < 500
}

// pair is one request sent twice. Its two answers, once both are decided,
// must be the same status and bytes, and a decision must be marked replayed
// on exactly one of them: whichever reached the engine second.
type pair struct {
	mu     sync.Mutex
	got    [2]bool
	status [2]int
	body   [2][]byte
	replay [2]bool
	// decision: the answer carried an outcome (a claim or spend decision),
	// which is what the idempotency record replays.
	decision [2]bool
}

// record stores one side's answer; when both are in and decided it returns
// compared = true and a non-empty mismatch if they disagree.
func (p *pair) record(side int, r *response, decision bool) (compared bool, mismatch string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got[side], p.status[side], p.body[side], p.replay[side], p.decision[side] = true, r.status, r.body, r.replayed, decision
	if !p.got[0] || !p.got[1] || !decided(p.status[0]) || !decided(p.status[1]) {
		return false, ""
	}
	switch {
	case p.status[0] != p.status[1]:
		return true, fmt.Sprintf("status %d then %d", p.status[0], p.status[1])
	case !bytes.Equal(p.body[0], p.body[1]):
		return true, fmt.Sprintf("status %d, bodies differ: %.200s vs %.200s", p.status[0], p.body[0], p.body[1])
	case p.decision[0] && p.replay[0] == p.replay[1]:
		return true, fmt.Sprintf("status %d, Idempotent-Replayed %v on both answers; want it on exactly one", p.status[0], p.replay[0])
	}
	return true, ""
}

// Histogram range: 1 µs to 60 s at 3 significant digits.
const (
	histMinUS = 1
	histMaxUS = 60_000_000
	histSig   = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUS, histMaxUS, histSig) }

// recordUS records d in µs, clamped to the histogram's range so an outlier
// is counted at the top rather than dropped.
func recordUS(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), histMinUS), histMaxUS)
	_ = h.RecordValue(us) // in range by construction
}

// Error kinds counted in Result.ErrorKinds.
const (
	errTransport  = "transport"
	errTimeout    = "timeout"
	errCancelled  = "cancelled" // the run was stopped (Ctrl-C) with the request in flight
	err5xx        = "5xx"
	errSaturated  = "client saturated"
	errMismatch   = "replay mismatch"
	errSSE        = "sse"
	errorSamplesN = 10
)

// recorder collects every sample of a run. All methods are safe for
// concurrent use; one mutex is plenty at the rates one machine can drive.
type recorder struct {
	scheduled, sent atomic.Int64
	mu              struct {
		sync.Mutex
		all        *hdrhistogram.Histogram
		ops        [opKinds]*hdrhistogram.Histogram
		staleness  *hdrhistogram.Histogram // µs, from leaderboard staleness_ms
		outcomes   map[string]int64
		labels     map[labelKey]string // label() of every answer shape seen, built once each
		errKinds   map[string]int64
		errSamples []string
		violations []string
		responses  int64
		errors     int64
		pairs      int64
		compared   int64
		mismatches int64
		lastDone   time.Time
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	r.mu.all = newHist()
	for i := range r.mu.ops {
		r.mu.ops[i] = newHist()
	}
	r.mu.staleness = newHist()
	r.mu.outcomes = map[string]int64{}
	r.mu.labels = map[labelKey]string{}
	r.mu.errKinds = map[string]int64{}
	return r
}

func (r *recorder) error(kind, sample string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errorLocked(kind, sample)
}

func (r *recorder) errorLocked(kind, sample string) {
	r.mu.errors++
	r.mu.errKinds[kind]++
	if len(r.mu.errSamples) < errorSamplesN {
		r.mu.errSamples = append(r.mu.errSamples, kind+": "+sample)
	}
}

func (r *recorder) violation(v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.violations = append(r.mu.violations, v)
}

func (r *recorder) scheduledOne(sent bool) {
	r.scheduled.Add(1)
	if sent {
		r.sent.Add(1)
	}
}

// labelKey is what label() depends on.
type labelKey struct {
	kind               opKind
	replayed           bool
	status             int
	outcome, code, typ string
}

// labelLocked is label(), plus " replayed", built once per distinct shape:
// the outcome counts then cost no allocation per answer.
func (r *recorder) labelLocked(kind opKind, status int, a *answer, replayed bool) string {
	k := labelKey{kind: kind, replayed: replayed, status: status, outcome: a.Outcome, code: a.Code, typ: a.Type}
	if l, ok := r.mu.labels[k]; ok {
		return l
	}
	l := label(kind, status, a)
	if replayed {
		l += " replayed"
	}
	r.mu.labels[k] = l
	return l
}

func (r *recorder) newPair() {
	r.mu.Lock()
	r.mu.pairs++
	r.mu.Unlock()
}

// execute sends rq, whose latency counts from its scheduled time at (not from
// when it was actually sent: a late client or a slow server both show up as
// latency, so nothing is hidden by coordinated omission), and records it.
// It returns the response and its parsed answer.
func (r *recorder) execute(c *client, rq *request, at time.Time) (response, answer) {
	resp, a := c.do(rq)
	lat := time.Since(at)
	var mismatch string
	var compared bool
	if resp.status != 0 && rq.pair != nil {
		compared, mismatch = rq.pair.record(rq.side, &resp, a.Outcome != "")
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.After(r.mu.lastDone) {
		r.mu.lastDone = now
	}
	if compared {
		r.mu.compared++
	}
	if resp.status == 0 {
		kind := errTransport
		var ne net.Error
		switch {
		case errors.Is(resp.err, context.Canceled):
			kind = errCancelled
		case errors.Is(resp.err, context.DeadlineExceeded) || errors.As(resp.err, &ne) && ne.Timeout():
			kind = errTimeout
		}
		r.errorLocked(kind, resp.err.Error())
		return resp, a
	}
	lbl := r.labelLocked(rq.kind, resp.status, &a, resp.replayed)
	if resp.status >= 500 {
		r.errorLocked(err5xx, fmt.Sprintf("%s %s: %s", rq.method, rq.path, lbl))
	}
	r.mu.responses++
	recordUS(r.mu.all, lat)
	recordUS(r.mu.ops[rq.kind], lat)
	r.mu.outcomes[lbl]++
	if mismatch != "" {
		r.mu.mismatches++
		r.errorLocked(errMismatch, mismatch)
		r.mu.violations = append(r.mu.violations, fmt.Sprintf("I3 %s %s key %q answered twice differently: %s", rq.method, rq.path, rq.key, mismatch))
	}
	if rq.kind == opLeaderboard && resp.status == http.StatusOK && a.HasStaleness {
		recordUS(r.mu.staleness, time.Duration(a.StalenessMS*float64(time.Millisecond)))
	}
	if rq.done != nil && decided(resp.status) {
		// done runs under the lock only because it is tiny (an atomic store).
		rq.done(resp.status, &a)
	}
	return resp, a
}

// progress is a snapshot for the live line.
type progress struct {
	sent, errors int64
	p99          time.Duration
}

func (r *recorder) progress() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return progress{sent: r.sent.Load(), errors: r.mu.errors, p99: time.Duration(r.mu.all.ValueAtQuantile(99)) * time.Microsecond}
}

// inflight bounds the requests in flight. The scheduler never waits for a
// slot: a request due when every slot is busy is counted as a "client
// saturated" error, so the schedule (and the latency of everything else)
// stays honest instead of the client silently slowing down.
type inflight chan struct{}

func (f inflight) tryAcquire() bool {
	select {
	case f <- struct{}{}:
		return true
	default:
		return false
	}
}

func (f inflight) release() { <-f }

// planner builds request i. next is called from the scheduler goroutine only,
// in order, so planners keep their state (random source, last pair) without
// locks; state the requests' done hooks touch must be safe for concurrent use.
type planner interface {
	next(i int64) *request
}

// openLoop sends rate.Count(d) requests, request i at start + rate.At(i, d),
// each on its own goroutine bounded by slots, and waits for the last answer.
// It stops early when ctx ends (requests in flight are cancelled).
func openLoop(ctx context.Context, c *client, rec *recorder, rate Rate, d time.Duration, slots inflight, p planner) time.Time {
	var wg sync.WaitGroup
	n := rate.Count(d)
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); i < n; i++ {
		at := start.Add(rate.At(i, d))
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		rq := p.next(i)
		if !slots.tryAcquire() {
			rec.scheduledOne(false)
			rec.error(errSaturated, fmt.Sprintf("%d requests in flight at request %d", cap(slots), i))
			continue
		}
		rec.scheduledOne(true)
		wg.Go(func() {
			defer slots.release()
			rec.execute(c, rq, at)
		})
	}
	wg.Wait()
	return start
}

// drain is io.Copy to io.Discard of at most bodyLenMax bytes.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, bodyLenMax)) }
