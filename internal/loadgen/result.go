package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Result is what a run measured; `cairn load --json` prints it as one object.
type Result struct {
	Scenario string `json:"scenario"`
	Params   Params `json:"params"`
	Setup    *Setup `json:"setup,omitempty"`
	// Scheduled is how many requests the schedule made due; Sent how many
	// went out (the rest found the client saturated); Responses how many got
	// an HTTP answer.
	Scheduled int64 `json:"scheduled"`
	Sent      int64 `json:"sent"`
	Responses int64 `json:"responses"`
	// ElapsedS runs from the first scheduled request to the last answer;
	// AchievedRPS is Responses / ElapsedS.
	ElapsedS    float64 `json:"elapsed_s"`
	AchievedRPS float64 `json:"achieved_rps"`
	Latency             // every answer, from its scheduled time
	// Errors counts transport errors and timeouts, 5xx answers, requests the
	// saturated client could not send, replay mismatches and SSE failures.
	Errors       int64               `json:"errors"`
	ErrorKinds   map[string]int64    `json:"error_kinds"`
	ErrorSamples []string            `json:"error_samples,omitempty"`
	Outcomes     map[string]int64    `json:"outcomes"` // "201 granted": n, "409 sold_out": n, ...
	Operations   map[string]*Latency `json:"operations"`
	Staleness    *Staleness          `json:"staleness,omitempty"`
	SSE          *SSEStats           `json:"sse,omitempty"`
	Storm        []StormRound        `json:"storm,omitempty"`
	Replay       *ReplayStats        `json:"replay,omitempty"`
	// Violations are invariant failures the client saw itself (a storm round
	// without exactly one grant, a retry answered differently); the server
	// audit's are in Verify.
	Violations []string `json:"violations"`
	Verify     *Verify  `json:"verify"`
	OK         bool     `json:"ok"`
}

// Params echoes the run's configuration.
type Params struct {
	Target           string  `json:"target"`
	Rate             string  `json:"rate,omitempty"`
	RateFrom         float64 `json:"rate_from,omitempty"`
	RateTo           float64 `json:"rate_to,omitempty"`
	DurationS        float64 `json:"duration_s,omitempty"`
	Players          int     `json:"players"`
	Hotspots         int     `json:"hotspots,omitempty"`
	Concurrency      int     `json:"concurrency,omitempty"`
	Rounds           int     `json:"rounds,omitempty"`
	Subscribers      int     `json:"subscribers,omitempty"`
	Hunt             string  `json:"hunt"`
	InFlightMax      int     `json:"inflight_max"`
	RequestTimeoutMS float64 `json:"request_timeout_ms"`
	Seed             uint64  `json:"seed"`
}

func paramsOf(c *Config, h hunt.HuntID, seed uint64) Params {
	p := Params{Target: c.Target, Players: c.Players, Hunt: string(h), InFlightMax: c.InFlightMax,
		RequestTimeoutMS: ms(c.RequestTimeout), Seed: seed}
	switch c.Scenario {
	case ScenarioStorm:
		p.Concurrency, p.Rounds = c.Concurrency, c.Rounds
		p.Players = max(c.Players, c.Concurrency)
		p.InFlightMax = max(c.InFlightMax, c.Concurrency)
	default:
		p.Rate, p.RateFrom, p.RateTo, p.DurationS = c.Rate.String(), c.Rate.From, c.Rate.To, c.Duration.Seconds()
		p.Hotspots = c.Hotspots
		if c.Scenario == ScenarioHunt {
			p.Subscribers = c.Subscribers
		}
	}
	return p
}

// Setup is what preparing the run took.
type Setup struct {
	Hotspots int     `json:"hotspots"`
	ImportMS float64 `json:"import_ms"`
}

// Latency summarizes one HDR histogram, in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
	MeanMS float64 `json:"mean_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count:  h.TotalCount(),
		P50MS:  usToMS(h.ValueAtQuantile(50)),
		P90MS:  usToMS(h.ValueAtQuantile(90)),
		P99MS:  usToMS(h.ValueAtQuantile(99)),
		P999MS: usToMS(h.ValueAtQuantile(99.9)),
		MaxMS:  usToMS(h.Max()),
		MeanMS: h.Mean() / 1000,
	}
}

// Staleness is the leaderboard's own staleness_ms as its reads reported it.
type Staleness struct {
	Reads int64   `json:"reads"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

// ReplayStats counts requests sent twice and how their answers compared.
type ReplayStats struct {
	Pairs      int64 `json:"pairs"`
	Compared   int64 `json:"compared"` // both answers were decisions (not 429/5xx/transport errors)
	Mismatches int64 `json:"mismatches"`
}

func (r *recorder) replayStats() *ReplayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &ReplayStats{Pairs: r.mu.pairs, Compared: r.mu.compared, Mismatches: r.mu.mismatches}
}

// fill copies the recorder's totals into res; start is when the schedule began.
func (r *recorder) fill(res *Result, start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Scheduled, res.Sent, res.Responses, res.Errors = r.scheduled.Load(), r.sent.Load(), r.mu.responses, r.mu.errors
	if r.mu.lastDone.After(start) {
		res.ElapsedS = r.mu.lastDone.Sub(start).Seconds()
		res.AchievedRPS = float64(res.Responses) / res.ElapsedS
	}
	res.Latency = summarize(r.mu.all)
	res.ErrorKinds = maps.Clone(r.mu.errKinds)
	res.ErrorSamples = slices.Clone(r.mu.errSamples)
	res.Outcomes = maps.Clone(r.mu.outcomes)
	res.Operations = map[string]*Latency{}
	for k, h := range r.mu.ops {
		if h.TotalCount() > 0 {
			l := summarize(h)
			res.Operations[opNames[k]] = &l
		}
	}
	if n := r.mu.staleness.TotalCount(); n > 0 {
		s := summarize(r.mu.staleness)
		res.Staleness = &Staleness{Reads: n, P50MS: s.P50MS, P99MS: s.P99MS, MaxMS: s.MaxMS}
	}
	res.Violations = append([]string{}, r.mu.violations...)
}

// Violated reports whether the run found a broken invariant, itself or
// through the server's audit (as opposed to an audit that could not run).
func (r *Result) Violated() bool {
	return len(r.Violations) > 0 || r.Verify != nil && r.Verify.Ran && !r.Verify.OK
}

// WriteText writes the human summary.
func (r *Result) WriteText(w io.Writer) {
	p := r.Params
	fmt.Fprintf(w, "cairn load: scenario %s against %s, hunt %s, %d players", r.Scenario, p.Target, p.Hunt, p.Players)
	if r.Scenario == ScenarioStorm {
		fmt.Fprintf(w, ", %d rounds of %d concurrent claims\n", p.Rounds, p.Concurrency)
	} else {
		fmt.Fprintf(w, ", rate %s req/s for %gs\n", p.Rate, p.DurationS)
	}
	if r.Setup != nil {
		fmt.Fprintf(w, "  setup       imported %d hotspots in %.0f ms\n", r.Setup.Hotspots, r.Setup.ImportMS)
	}
	fmt.Fprintf(w, "  requests    %d scheduled, %d sent, %d answered in %.2f s = %.0f req/s\n",
		r.Scheduled, r.Sent, r.Responses, r.ElapsedS, r.AchievedRPS)
	fmt.Fprintf(w, "  latency     %s\n", r.Latency.text())
	for _, name := range opNames {
		if l := r.Operations[name]; l != nil && len(r.Operations) > 1 {
			fmt.Fprintf(w, "  %-11s %s\n", name, l.text())
		}
	}
	fmt.Fprintf(w, "  errors      %d%s\n", r.Errors, countsText(r.ErrorKinds, " (", ")"))
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "              %.200s\n", s)
	}
	fmt.Fprintf(w, "  outcomes    %s\n", countsText(r.Outcomes, "", ""))
	if s := r.Staleness; s != nil {
		fmt.Fprintf(w, "  staleness   %d leaderboard reads: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", s.Reads, s.P50MS, s.P99MS, s.MaxMS)
	}
	if s := r.SSE; s != nil {
		fmt.Fprintf(w, "  sse         %d subscribers, %d events, delay p50 %.1f ms p99 %.1f ms max %.1f ms, %d disconnects\n",
			s.Subscribers, s.Events, s.DelayP50MS, s.DelayP99MS, s.DelayMaxMS, s.Disconnects)
	}
	for _, s := range r.Storm {
		fmt.Fprintf(w, "  storm %-5d %d claims: %d granted, %d sold_out, %d other; all answered in %.1f ms (p99 %.1f ms)\n",
			s.Round, s.Claims, s.Granted, s.SoldOut, s.Other, s.AllInMS, s.P99MS)
	}
	if s := r.Replay; s != nil && s.Pairs > 0 {
		fmt.Fprintf(w, "  replays     %d sent twice, %d compared, %d mismatches\n", s.Pairs, s.Compared, s.Mismatches)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  VIOLATION   %s\n", v)
	}
	if r.Verify != nil {
		fmt.Fprintln(w, r.Verify.Verdict)
	}
}

func (l *Latency) text() string {
	return fmt.Sprintf("n %d  p50 %.2f ms  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f",
		l.Count, l.P50MS, l.P90MS, l.P99MS, l.P999MS, l.MaxMS, l.MeanMS)
}

// countsText lists counts largest first: "201 granted 700, 409 sold_out 20".
func countsText(m map[string]int64, pre, post string) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	b.WriteString(pre)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	b.WriteString(post)
	return b.String()
}
