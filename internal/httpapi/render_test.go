package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// TestTokenMatchesHunt keeps the hand-written token equal to hunt's.
func TestTokenMatchesHunt(t *testing.T) {
	for _, e := range []hunt.Epoch{{Partition: 0, Seq: 1}, {Partition: 63, Seq: 123456789}, {Partition: 4095, Seq: 1<<64 - 1}} {
		got := string(appendToken(nil, e))
		if want := hunt.ConsistencyToken(e); got != want {
			t.Errorf("appendToken(%v) = %q; want %q", e, got, want)
		}
		if back, err := hunt.ParseConsistencyToken(got); err != nil || back != e {
			t.Errorf("ParseConsistencyToken(%q) = %v, %v; want %v", got, back, err, e)
		}
	}
}

// TestRenderClaim: every outcome renders valid JSON with its status, the
// same bytes every time (replays are byte-identical), and the grant's
// members exactly.
func TestRenderClaim(t *testing.T) {
	ev := hunt.Event{Kind: hunt.KindClaimCompleted, Epoch: hunt.Epoch{Partition: 7, Seq: 42}, At: time.Unix(1700000000, 123456789),
		Player: "p\"1", Key: "k", Hunt: "h", Hotspot: "s", Reward: 10, Points: 3, TicketsLeft: 4}
	want := map[hunt.Outcome]int{hunt.Granted: 201, hunt.AlreadyClaimed: 409, hunt.SoldOut: 409, hunt.TooFar: 422,
		hunt.NotOpen: 422, hunt.ImplausibleMovement: 422}
	for o, status := range want {
		ev.Outcome = o
		b1, s1, ok1 := renderClaim(nil, &ev)
		b2, _, _ := renderClaim(make([]byte, 0, 8), &ev)
		if !ok1 || s1 != status || string(b1) != string(b2) {
			t.Fatalf("renderClaim(%v) = %d, %v, %s / %s; want %d and identical bytes", o, s1, ok1, b1, b2, status)
		}
		var m map[string]any
		if err := json.Unmarshal(b1, &m); err != nil {
			t.Fatalf("renderClaim(%v) = %s: not JSON: %v", o, b1, err)
		}
		if m["outcome"] != o.String() || m["claim_id"] != "7.42" || m["consistency_token"] != "7.42" || m["player"] != `p"1` {
			t.Fatalf("renderClaim(%v) = %s", o, b1)
		}
		if o == hunt.Granted && len(m) != 10 {
			t.Fatalf("grant has %d members; want 10: %s", len(m), b1)
		}
		if o != hunt.Granted && (m["code"] != o.String() || m["status"] != float64(status) || m["reward"] != nil) {
			t.Fatalf("refusal %v = %s; want a problem with code %s and no reward", o, b1, o)
		}
	}
	ev.Outcome = hunt.Spent
	if _, _, ok := renderClaim(nil, &ev); ok {
		t.Errorf("renderClaim(claim event with outcome spent) ok; want false")
	}
	ev.Kind, ev.Outcome = hunt.KindSpendCompleted, hunt.Spent
	if _, _, ok := renderClaim(nil, &ev); ok {
		t.Errorf("renderClaim(spend event) ok; want false")
	}
	ev.Amount, ev.Balance, ev.Reason = 5, 7, "snack"
	b, status, ok := renderSpend(nil, &ev)
	var m map[string]any
	if !ok || status != http.StatusCreated || json.Unmarshal(b, &m) != nil || m["balance"] != 7.0 || m["amount"] != 5.0 {
		t.Fatalf("renderSpend(spent) = %d %s", status, b)
	}
	ev.Outcome = hunt.InsufficientFunds
	if b, status, ok := renderSpend(nil, &ev); !ok || status != http.StatusConflict || json.Unmarshal(b, &m) != nil || m["code"] != "insufficient_funds" {
		t.Fatalf("renderSpend(insufficient_funds) = %d %s", status, b)
	}
}

// TestClaimFrame checks an SSE frame's shape: id, event, one data line of JSON.
func TestClaimFrame(t *testing.T) {
	ev := hunt.Event{Kind: hunt.KindClaimCompleted, Outcome: hunt.Granted, Epoch: hunt.Epoch{Partition: 1, Seq: 2},
		At: time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600)), Player: "p\n2", Hunt: "h", Hotspot: "s"}
	f := string(appendClaimFrame(nil, 7, 3, &ev, string(ev.Player)))
	const head = "id: 7-3\nevent: claim\ndata: "
	if len(f) < len(head) || f[:len(head)] != head || f[len(f)-2:] != "\n\n" {
		t.Fatalf("frame = %q", f)
	}
	data := f[len(head) : len(f)-2]
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("frame data %q: %v", data, err)
	}
	if m["at"] != "2030-01-02T02:04:05.678Z" || m["player"] != "p\n2" {
		t.Fatalf("frame data = %v; want at in UTC ms and the player's newline escaped", m)
	}
}
