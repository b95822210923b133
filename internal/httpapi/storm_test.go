package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestStorm is the storm acceptance test: 10,000 claims from 10,000 players
// on one single-ticket hotspot through the real HTTP stack give exactly one
// 201 granted and 9,999 409 sold_out; the winner's wallet shows one credit
// and the leaderboard, read with after=<the winner's token>, the points.
//
// Every claim has its own goroutine, all released at once. The client may
// open up to connsMax connections (each costs two descriptors on loopback,
// and the process may have 20,000); under the race detector, which allows
// 8128 live goroutines, 1,500 senders share the 10,000 claims. The engine's default inbox (4096) is never full:
// a connection carries one request at a time.
func TestStorm(t *testing.T) {
	const players = 10_000
	senders, connsMax := players, 4000
	if raceEnabled {
		senders, connsMax = 1500, 1500
	}
	// The storm checks outcomes, not speed: on a loaded machine (and under
	// the race detector) a claim may wait longer than the default 5 s
	// request deadline, which would answer 503 and prove nothing.
	e := newEnv(t, envOption{conns: connsMax, api: func(c *Config) { c.RequestTimeout = time.Minute }})
	s := numSpot(0, 1)
	e.basicHunt(s)

	tokens := make([]string, players)
	for i := range tokens {
		tokens[i] = e.token("p" + strconv.Itoa(i))
	}
	body := fmt.Sprintf(`{"lat":%v,"lon":%v}`, s.lat, s.lon)
	url := e.srv.URL + "/v1/hunts/h1/hotspots/" + s.id + "/claim"

	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make([]answer, players)
	start := make(chan struct{})
	next := make(chan int, players)
	for i := 0; i < players; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range next {
				hr, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(body)))
				hr.Header.Set("Authorization", "Bearer "+tokens[i])
				hr.Header.Set("Idempotency-Key", "storm")
				res, err := e.client.Do(hr)
				if err != nil {
					answers[i].err = err
					continue
				}
				var b bytes.Buffer
				_, err = b.ReadFrom(res.Body)
				res.Body.Close()
				answers[i] = answer{res.StatusCode, b.Bytes(), err}
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("storm: %d claims answered in %v (%d senders, %d connections at most)", players, time.Since(began), senders, connsMax)

	winner := -1
	soldOut := 0
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("claim %d: %v", i, a.err)
		case a.status == http.StatusCreated:
			if winner >= 0 {
				t.Fatalf("claims %d and %d both granted: %s / %s", winner, i, answers[winner].body, a.body)
			}
			winner = i
		case a.status == http.StatusConflict && bytes.Contains(a.body, []byte(`"outcome":"sold_out"`)):
			soldOut++
		default:
			t.Fatalf("claim %d = %d %s; want 201 granted or 409 sold_out", i, a.status, a.body)
		}
	}
	if winner < 0 || soldOut != players-1 {
		t.Fatalf("storm: winner %d, %d sold_out; want exactly one winner and %d sold_out", winner, soldOut, players-1)
	}
	var grant struct {
		Player string `json:"player"`
		Token  string `json:"consistency_token"`
	}
	if err := json.Unmarshal(answers[winner].body, &grant); err != nil || grant.Player != "p"+strconv.Itoa(winner) {
		t.Fatalf("winning answer %s: %v; want player p%d", answers[winner].body, err, winner)
	}
	if got := e.wallet(tokens[winner]); got != s.reward {
		t.Fatalf("winner's wallet = %d; want one credit of %d", got, s.reward)
	}
	lr := e.do(req{method: "GET", path: "/v1/hunts/h1/leaderboard?after=" + grant.Token})
	mustStatus(t, "leaderboard after the storm", lr, http.StatusOK)
	entries := decodeJSON(t, lr)["entries"].([]any)
	if len(entries) != 1 {
		t.Fatalf("leaderboard = %s; want exactly the winner", lr.body)
	}
	top := entries[0].(map[string]any)
	if top["player"] != grant.Player || top["score"] != json.Number(strconv.FormatInt(s.points, 10)) || top["rank"] != json.Number("1") {
		t.Fatalf("leaderboard top = %v; want rank 1 %s with %d points", top, grant.Player, s.points)
	}
}
