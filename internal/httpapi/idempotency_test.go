package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
)

// ticketsLeft reads a hotspot's tickets_left through the nearby query.
func (e *testEnv) ticketsLeft(tok string, s spot) int64 {
	e.t.Helper()
	r := e.do(req{method: "GET", auth: tok,
		path: fmt.Sprintf("/v1/hunts/h1/hotspots?lat=%v&lon=%v&radius_m=10&limit=5", s.lat, s.lon)})
	mustStatus(e.t, "nearby", r, http.StatusOK)
	for _, v := range decodeJSON(e.t, r)["hotspots"].([]any) {
		h := v.(map[string]any)
		if h["id"] == s.id {
			n, _ := h["tickets_left"].(json.Number).Int64()
			return n
		}
	}
	e.t.Fatalf("nearby %s: hotspot %s not listed in %s", s.id, s.id, r.body)
	return 0
}

// TestIdempotency is the idempotency acceptance test (I3) over HTTP.
func TestIdempotency(t *testing.T) {
	e := newEnv(t, envOption{})
	s1, s2, s3 := numSpot(0, 100), numSpot(1, 100), numSpot(2, 100)
	e.basicHunt(s1, s2, s3)
	alice, bob := e.token("alice"), e.token("bob")

	t.Run("sequential replays", func(t *testing.T) {
		first := e.claim(alice, "h1", s1.id, "seq-key", s1.lat, s1.lon)
		mustStatus(t, "first claim", first, http.StatusCreated)
		if first.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first claim carries Idempotent-Replayed")
		}
		for i := 0; i < 10; i++ {
			again := e.claim(alice, "h1", s1.id, "seq-key", s1.lat, s1.lon)
			if again.status != first.status || !bytes.Equal(again.body, first.body) {
				t.Fatalf("replay %d = %v; want byte-identical %v", i, again, first)
			}
			if again.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay %d: Idempotent-Replayed = %q; want true", i, again.header.Get("Idempotent-Replayed"))
			}
		}
		if got := e.wallet(alice); got != s1.reward {
			t.Fatalf("wallet after 11 identical claims = %d; want one credit %d", got, s1.reward)
		}
		if got := e.ticketsLeft(alice, s1); got != 99 {
			t.Fatalf("tickets_left = %d; want 99", got)
		}
	})

	t.Run("concurrent duplicates", func(t *testing.T) {
		const dups = 100
		body := fmt.Sprintf(`{"lat":%v,"lon":%v}`, s2.lat, s2.lon)
		type answer struct {
			status   int
			body     []byte
			replayed string
		}
		answers := make([]answer, dups)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hr, _ := http.NewRequest("POST", e.srv.URL+"/v1/hunts/h1/hotspots/"+s2.id+"/claim", bytes.NewReader([]byte(body)))
				hr.Header.Set("Authorization", "Bearer "+bob)
				hr.Header.Set("Idempotency-Key", "dup-key")
				<-start
				res, err := e.client.Do(hr)
				if err != nil {
					t.Errorf("duplicate %d: %v", i, err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				answers[i] = answer{res.StatusCode, b, res.Header.Get("Idempotent-Replayed")}
			}()
		}
		close(start)
		wg.Wait()
		firsts := 0
		for i, a := range answers {
			if a.status != http.StatusCreated || !bytes.Equal(a.body, answers[0].body) {
				t.Fatalf("duplicate %d = %d %s; want 201 and the body of duplicate 0 %s", i, a.status, a.body, answers[0].body)
			}
			switch a.replayed {
			case "":
				firsts++
			case "true":
			default:
				t.Fatalf("duplicate %d: Idempotent-Replayed = %q", i, a.replayed)
			}
		}
		if firsts != 1 {
			t.Fatalf("%d answers without Idempotent-Replayed; want exactly 1", firsts)
		}
		if got := e.wallet(bob); got != s2.reward {
			t.Fatalf("wallet after %d duplicates = %d; want one credit %d", dups, got, s2.reward)
		}
		if got := e.ticketsLeft(bob, s2); got != 99 {
			t.Fatalf("tickets_left = %d; want 99 (one effect)", got)
		}
	})

	t.Run("key reused for another request", func(t *testing.T) {
		checkProblem(t, "same key, other hotspot", e.claim(alice, "h1", s3.id, "seq-key", s3.lat, s3.lon), 422, "idempotency_key_reused")
		checkProblem(t, "same key, same hotspot, other body", e.claim(alice, "h1", s1.id, "seq-key", s1.lat, s1.lon+0.0001), 422, "idempotency_key_reused")
		if got := e.ticketsLeft(alice, s3); got != 100 {
			t.Fatalf("tickets_left of %s = %d after a refused reuse; want 100", s3.id, got)
		}
	})

	t.Run("missing key", func(t *testing.T) {
		checkProblem(t, "no Idempotency-Key", e.claim(alice, "h1", s3.id, "", s3.lat, s3.lon), 400, "missing_idempotency_key")
	})

	t.Run("keys are per player", func(t *testing.T) {
		carol, dave := e.token("carol"), e.token("dave")
		a := e.claim(carol, "h1", s3.id, "shared-key", s3.lat, s3.lon)
		b := e.claim(dave, "h1", s3.id, "shared-key", s3.lat, s3.lon)
		mustStatus(t, "carol", a, http.StatusCreated)
		mustStatus(t, "dave", b, http.StatusCreated)
		if b.header.Get("Idempotent-Replayed") != "" || decodeJSON(t, a)["claim_id"] == decodeJSON(t, b)["claim_id"] {
			t.Fatalf("same key by two players: %v / %v; want two independent grants", a, b)
		}
		if e.wallet(carol) != s3.reward || e.wallet(dave) != s3.reward {
			t.Fatalf("wallets %d / %d; want %d each", e.wallet(carol), e.wallet(dave), s3.reward)
		}
	})
}
