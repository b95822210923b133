package loadgen

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is an arrival rate in requests per second that moves linearly from
// From to To over a run's duration. From == To is a constant rate.
type Rate struct {
	From, To float64
}

// RateMax bounds either end of a Rate (requests per second).
const RateMax = 1_000_000

// ErrBadRate reports a --rate that does not parse or is out of range.
var ErrBadRate = errors.New("rate must be R or R1:R2 requests per second, each in (0, 1000000]")

// ParseRate parses "R" (constant) or "R1:R2" (linear ramp from R1 to R2).
func ParseRate(s string) (Rate, error) {
	a, b, ramp := strings.Cut(s, ":")
	from, err := strconv.ParseFloat(strings.TrimSpace(a), 64)
	if err != nil {
		return Rate{}, fmt.Errorf("%w: %q", ErrBadRate, s)
	}
	to := from
	if ramp {
		if to, err = strconv.ParseFloat(strings.TrimSpace(b), 64); err != nil {
			return Rate{}, fmt.Errorf("%w: %q", ErrBadRate, s)
		}
	}
	r := Rate{From: from, To: to}
	if err := r.Validate(); err != nil {
		return Rate{}, fmt.Errorf("%w: %q", err, s)
	}
	return r, nil
}

// Validate checks that both ends are finite and in (0, RateMax].
func (r Rate) Validate() error {
	for _, v := range [...]float64{r.From, r.To} {
		if math.IsNaN(v) || v <= 0 || v > RateMax {
			return ErrBadRate
		}
	}
	return nil
}

func (r Rate) String() string {
	f := strconv.FormatFloat(r.From, 'g', -1, 64)
	if r.From == r.To {
		return f
	}
	return f + ":" + strconv.FormatFloat(r.To, 'g', -1, 64)
}

// Count is how many requests the schedule sends in d: the integral of the
// rate over d, (From+To)/2 · d, rounded down.
func (r Rate) Count(d time.Duration) int64 {
	return int64(math.Floor((r.From+r.To)/2*d.Seconds() + 1e-9))
}

// At is the send time of request i (0-based), counted from the start of a
// run lasting d. With rate(t) = From + a·t, a = (To−From)/d, the number sent
// by time t is N(t) = From·t + a·t²/2; At solves N(t) = i for t. The form
// 2i / (From + √(From² + 2ai)) is the quadratic root written so that it does
// not cancel when a is tiny and still holds for a falling ramp (a < 0).
func (r Rate) At(i int64, d time.Duration) time.Duration {
	if i <= 0 {
		return 0
	}
	n := float64(i)
	a := 0.0
	if secs := d.Seconds(); secs > 0 {
		a = (r.To - r.From) / secs
	}
	disc := r.From*r.From + 2*a*n
	if disc < 0 { // past the end of a falling ramp: the rate would be ≤ 0
		disc = 0
	}
	t := 2 * n / (r.From + math.Sqrt(disc))
	return time.Duration(t * float64(time.Second))
}
