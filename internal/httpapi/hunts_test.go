package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// TestHuntAdmin covers creating, replacing and reading hunts.
func TestHuntAdmin(t *testing.T) {
	e := newEnv(t, envOption{})
	put := func(body string) resp {
		return e.do(req{method: "PUT", path: "/v1/admin/hunts/paris", auth: testAdmin, body: body})
	}
	r := put(`{"name":"Paris","starts_at":"2030-01-01T10:00:00+01:00","max_speed_mps":12.5}`)
	mustStatus(t, "create", r, http.StatusCreated)
	m := decodeJSON(t, r)
	if m["id"] != "paris" || m["claim_radius_m"] != json.Number("50") || m["starts_at"] != "2030-01-01T10:00:00+01:00" || m["max_speed_mps"] != json.Number("12.5") {
		t.Fatalf("created hunt = %s; want id paris, default radius 50, the start time and speed", r.body)
	}
	if _, ok := m["ends_at"]; ok {
		t.Fatalf("created hunt = %s; want no ends_at", r.body)
	}
	r = put(`{"id":"paris","name":"Paris by night","claim_radius_m":25}`)
	mustStatus(t, "replace", r, http.StatusOK)
	get := e.do(req{method: "GET", path: "/v1/admin/hunts/paris", auth: testAdmin})
	mustStatus(t, "admin get", get, http.StatusOK)
	if m := decodeJSON(t, get); m["name"] != "Paris by night" || m["claim_radius_m"] != json.Number("25") || m["starts_at"] != nil {
		t.Fatalf("hunt after replace = %s; want the new name and radius, no start", get.body)
	}
	pub := e.do(req{method: "GET", path: "/v1/hunts/paris", auth: e.token("p")})
	if pub.status != http.StatusOK || string(pub.body) != string(get.body) {
		t.Fatalf("public view = %v; want the admin view %s", pub, get.body)
	}
	checkProblem(t, "public view without a token", e.do(req{method: "GET", path: "/v1/hunts/paris"}), 401, "unauthorized")
	checkProblem(t, "unknown hunt", e.do(req{method: "GET", path: "/v1/hunts/nope", auth: e.token("p")}), 404, "unknown_hunt")
	list := e.do(req{method: "GET", path: "/v1/admin/hunts", auth: testAdmin})
	mustStatus(t, "list", list, http.StatusOK)
	if hs := decodeJSON(t, list)["hunts"].([]any); len(hs) != 1 || hs[0].(map[string]any)["id"] != "paris" {
		t.Fatalf("hunt list = %s; want [paris]", list.body)
	}
}

// TestNearby: nearest first, within the radius, capped by limit, with tickets_left.
func TestNearby(t *testing.T) {
	e := newEnv(t, envOption{})
	spots := []spot{numSpot(0, 4), numSpot(1, 4), numSpot(2, 4), numSpot(14, 4)} // 0, 1.1, 2.2 km north; 1.5 km east
	spots[1].opensAt, spots[1].closeAt = "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"
	e.basicHunt(spots...)
	tok := e.token("p")
	mustStatus(t, "claim", e.claim(tok, "h1", spots[0].id, e.key(), spots[0].lat, spots[0].lon), http.StatusCreated)
	near := func(q string) []map[string]any {
		r := e.do(req{method: "GET", auth: tok, path: fmt.Sprintf("/v1/hunts/h1/hotspots?lat=%v&lon=%v%s", parisLat, parisLon, q)})
		mustStatus(t, "nearby"+q, r, http.StatusOK)
		var out []map[string]any
		for _, v := range decodeJSON(t, r)["hotspots"].([]any) {
			out = append(out, v.(map[string]any))
		}
		return out
	}
	all := near("&radius_m=5000")
	if len(all) != 4 || all[0]["id"] != "s0" || all[1]["id"] != "s1" {
		t.Fatalf("nearby within 5 km = %v; want 4, nearest (s0, s1) first", all)
	}
	if all[0]["tickets_left"] != json.Number("3") || all[0]["distance_m"] != json.Number("0") || all[1]["opens_at"] != "2030-01-01T00:00:00Z" {
		t.Fatalf("nearby fields = %v", all[:2])
	}
	if got := near("&radius_m=1300"); len(got) != 2 || got[1]["id"] != "s1" {
		t.Fatalf("nearby within 1.3 km = %v; want s0 and s1", got)
	}
	if got := near("&radius_m=5000&limit=1"); len(got) != 1 || got[0]["id"] != "s0" {
		t.Fatalf("nearby limit 1 = %v; want s0", got)
	}
	if got := near(""); len(got) != 1 {
		t.Fatalf("nearby with the default radius of 1 km = %v; want s0 only", got)
	}
}
