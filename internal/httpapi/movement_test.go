package httpapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestMovementDefault: a hunt created without max_speed_mps has the default
// speed check, so a teleport is refused; max_speed_mps 0 turns it off,
// explicitly.
func TestMovementDefault(t *testing.T) {
	e := newEnv(t, envOption{})
	a, b := numSpot(3, 5), numSpot(20, 5) // ~3 km apart
	e.putHunt("new", `{"name":"default speed"}`)
	e.importSpots("new", a, b)
	e.putHunt("off", `{"name":"no speed check","max_speed_mps":0}`)
	e.importSpots("off", a, b)

	h := decodeJSON(t, e.do(req{method: "GET", path: "/v1/hunts/new", auth: e.token("x")}))
	if n, _ := h["max_speed_mps"].(json.Number); n != "50" {
		t.Fatalf("GET new hunt = %v; want max_speed_mps 50", h)
	}
	bot := e.token("bot")
	mustStatus(t, "grant before the jump", e.claim(bot, "new", a.id, e.key(), a.lat, a.lon), http.StatusCreated)
	checkProblem(t, "a 3 km jump at once on a new hunt", e.claim(bot, "new", b.id, e.key(), b.lat, b.lon),
		http.StatusUnprocessableEntity, "implausible_movement")
	mustStatus(t, "grant before the jump (check off)", e.claim(bot, "off", a.id, e.key(), a.lat, a.lon), http.StatusCreated)
	mustStatus(t, "the same jump with the check off", e.claim(bot, "off", b.id, e.key(), b.lat, b.lon), http.StatusCreated)

	checkProblem(t, "a negative max_speed_mps", e.do(req{method: "PUT", path: "/v1/admin/hunts/neg", auth: testAdmin,
		body: `{"max_speed_mps":-1}`}), http.StatusBadRequest, "invalid_request")
	checkProblem(t, "a null max_speed_mps", e.do(req{method: "PUT", path: "/v1/admin/hunts/null", auth: testAdmin,
		body: `{"max_speed_mps":null}`}), http.StatusBadRequest, "invalid_request")
}

// TestRepeatedRefusalsMetric: a player refused too_far again and again
// shows in cairn_repeated_refusals_total (without a player label); a
// player refused once or twice does not.
func TestRepeatedRefusalsMetric(t *testing.T) {
	e := newEnv(t, envOption{})
	s := numSpot(0, 100)
	e.basicHunt(s)
	value := func() string {
		m := e.do(req{method: "GET", path: "/metrics"})
		mustStatus(t, "GET /metrics", m, http.StatusOK)
		for _, l := range strings.Split(string(m.body), "\n") {
			if strings.HasPrefix(l, `cairn_repeated_refusals_total{outcome="too_far"} `) {
				return strings.Fields(l)[1]
			}
		}
		return "0"
	}
	careless := e.token("careless")
	for range 2 {
		checkProblem(t, "a careless claim", e.claim(careless, "h1", s.id, e.key(), s.lat+0.01, s.lon), http.StatusUnprocessableEntity, "too_far")
	}
	if v := value(); v != "0" {
		t.Fatalf("after two too_far of one player: cairn_repeated_refusals_total{too_far} = %s; want 0", v)
	}
	spoofer := e.token("spoofer-id")
	for range 5 {
		checkProblem(t, "a spoofed claim", e.claim(spoofer, "h1", s.id, e.key(), s.lat+0.01, s.lon), http.StatusUnprocessableEntity, "too_far")
	}
	if v := value(); v != "2" {
		t.Fatalf("after five too_far of one player: cairn_repeated_refusals_total{too_far} = %s; want 2 (the 4th and 5th)", v)
	}
	m := e.do(req{method: "GET", path: "/metrics"})
	if regexp.MustCompile(`cairn_repeated_refusals_total\{[^}]*spoofer`).Match(m.body) {
		t.Fatalf("the metric has a player label")
	}
}
