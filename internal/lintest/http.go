package lintest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/hunt"
)

// HTTP is the target of a running node, called through its public API the
// way players call it. A transport error, a 5xx or a 429 leaves a call's
// outcome unknown; a 500 fails the test as well (unknown for the history,
// but a server that fails this way has a bug), and so does any other status
// than the call's outcomes, or a malformed body.
type HTTP struct {
	Client *http.Client // its Timeout, if any, bounds every call
	Base   string       // such as http://127.0.0.1:8080
	// Token returns the bearer token of a player.
	Token func(hunt.PlayerID) string
}

// Do implements Target.
func (h *HTTP) Do(ctx context.Context, c Call) (Answer, error) {
	switch c.Kind {
	case audit.OpClaim:
		path := "/v1/hunts/" + string(Hunt) + "/hotspots/" + string(c.Spot.ID) + "/claim"
		body := map[string]float64{"lat": c.Spot.Lat, "lon": c.Spot.Lon}
		return h.decision(ctx, c, path, body, map[string]int{"granted": 201, "already_claimed": 409, "sold_out": 409})
	case audit.OpSpend:
		body := map[string]any{"amount": c.Amount, "reason": c.Reason}
		return h.decision(ctx, c, "/v1/wallet/spend", body, map[string]int{"spent": 201, "insufficient_funds": 409})
	case audit.OpWallet:
		st, b, err := h.do(ctx, "GET", "/v1/wallet", c, nil)
		a, err := sortStatus(st, b, err)
		if err != nil {
			return a, err
		}
		var w hunt.Wallet
		if st != http.StatusOK || json.Unmarshal(b, &w) != nil || w.Player != c.Player {
			return a, fmt.Errorf("%d %s: want 200 and the wallet of %s", st, b, c.Player)
		}
		a.Balance, a.Label = w.Balance, a.Label+" wallet"
		return a, nil
	}
	return Answer{}, fmt.Errorf("call of kind %v", c.Kind)
}

// decision is the part of a claim's or spend's answer (201 or a 409 problem)
// the history records.
type decision struct {
	Outcome     string `json:"outcome"`
	Player      string `json:"player"`
	TicketsLeft *int64 `json:"tickets_left"`
	Balance     *int64 `json:"balance"`
}

// decision posts a claim or spend; want maps each outcome of the call to its
// status.
func (h *HTTP) decision(ctx context.Context, c Call, path string, body any, want map[string]int) (Answer, error) {
	st, b, err := h.do(ctx, "POST", path, c, body)
	a, err := sortStatus(st, b, err)
	if err != nil {
		return a, err
	}
	var d decision
	if err := json.Unmarshal(b, &d); err != nil {
		return a, fmt.Errorf("%d %s: %v", st, b, err)
	}
	o, ok := hunt.ParseOutcome(d.Outcome)
	if !ok || want[d.Outcome] != st {
		return a, fmt.Errorf("%d %s: outcome %q is not an answer of this call with this status", st, b, d.Outcome)
	}
	detail := d.TicketsLeft
	if c.Kind == audit.OpSpend {
		detail = d.Balance
	}
	if detail == nil || d.Player != string(c.Player) {
		return a, fmt.Errorf("%d %s: want tickets_left (claims) or balance (spends), and player %s", st, b, c.Player)
	}
	a.Outcome, a.Label = o, a.Label+" "+d.Outcome
	if c.Kind == audit.OpSpend {
		a.Balance = *detail
	} else {
		a.TicketsLeft = *detail
	}
	return a, nil
}

// sortStatus sorts an HTTP status that is not an answer: nil for 2xx and
// 409 (decisions, parsed by the caller), an error wrapping ErrUnknown for
// what leaves the outcome unknown, another error for the rest.
func sortStatus(st int, b []byte, err error) (Answer, error) {
	switch {
	case err != nil:
		return Answer{Label: "no answer"}, fmt.Errorf("%w: %v", ErrUnknown, err)
	case st == http.StatusInternalServerError:
		return Answer{Label: "500"}, fmt.Errorf("500 %s", b)
	case st == http.StatusTooManyRequests || st >= 500:
		return Answer{Label: strconv.Itoa(st)}, fmt.Errorf("%w: %d %s", ErrUnknown, st, b)
	case st < 300 || st == http.StatusConflict:
		return Answer{Label: strconv.Itoa(st)}, nil
	}
	return Answer{Label: strconv.Itoa(st)}, fmt.Errorf("status %d %s", st, b)
}

// do makes one exchange as c.Player (with c.Key as its Idempotency-Key, if
// any) and reads the whole answer.
func (h *HTTP) do(ctx context.Context, method, path string, c Call, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.Base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token(c.Player))
	if c.Key != "" {
		req.Header.Set("Idempotency-Key", c.Key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
