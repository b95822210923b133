package loadgen

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// fakeCairn is a small in-memory Cairn speaking the HTTP contract the
// generator uses: enough to run every scenario at unit scale, and to break
// on purpose (grant every claim, never replay, fail the audit) so the tests
// can see the generator notice.
type fakeCairn struct {
	secret []byte
	admin  string

	// Ways to be wrong.
	grantAll     bool // ignore tickets: a storm round grants many
	noReplay     bool // decide every retry anew: replays differ
	auditStatus  int  // 0: answer the audit 200 ok; else this status with a violation
	sseDropAfter int  // > 0: close every event stream after this many events

	requests atomic.Int64
	mu       struct {
		sync.Mutex
		hunts   map[string]bool
		spots   map[string]*fakeSpot // hunt + "/" + id
		idem    map[string]fakeAnswer
		holders map[string]bool
		wallets map[string]int64
		seq     int64
		subs    map[chan string]struct{}
		claims  int
	}
}

type fakeSpot struct {
	lat, lon        float64
	tickets, reward int64
	points, granted int64
}

type fakeAnswer struct {
	fp     string
	status int
	body   []byte
}

const testSecret = "0123456789abcdef-test-secret"
const testAdmin = "admin-token-0123456789"

func newFake(t *testing.T, mod func(f *fakeCairn)) (*fakeCairn, *httptest.Server) {
	t.Helper()
	f := &fakeCairn{secret: []byte(testSecret), admin: testAdmin}
	f.mu.hunts = map[string]bool{}
	f.mu.spots = map[string]*fakeSpot{}
	f.mu.idem = map[string]fakeAnswer{}
	f.mu.holders = map[string]bool{}
	f.mu.wallets = map[string]int64{}
	f.mu.subs = map[chan string]struct{}{}
	if mod != nil {
		mod(f)
	}
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("PUT /v1/admin/hunts/{hunt}", f.admin_(f.putHunt))
	mux.HandleFunc("POST /v1/admin/hunts/{hunt}/hotspots", f.admin_(f.importSpots))
	mux.HandleFunc("GET /v1/admin/audit", f.admin_(f.audit))
	mux.HandleFunc("POST /v1/hunts/{hunt}/hotspots/{id}/claim", f.player(f.claim))
	mux.HandleFunc("POST /v1/wallet/spend", f.player(f.spend))
	mux.HandleFunc("GET /v1/wallet", f.player(f.wallet))
	mux.HandleFunc("GET /v1/hunts/{hunt}/leaderboard", f.player(f.leaderboard))
	mux.HandleFunc("GET /v1/hunts/{hunt}/events", f.player(f.events))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func problem(w http.ResponseWriter, status int, code string, extra string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"https://cairn.dev/problems/%s","title":%q,"status":%d%s}`, code, code, status, extra)
}

func (f *fakeCairn) admin_(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.admin {
			problem(w, http.StatusUnauthorized, "unauthorized", "")
			return
		}
		h(w, r)
	}
}

func (f *fakeCairn) player(h func(w http.ResponseWriter, r *http.Request, player string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var c jwt.RegisteredClaims
		_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return f.secret, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
		if err != nil || !hunt.ValidID(c.Subject) {
			problem(w, http.StatusUnauthorized, "unauthorized", "")
			return
		}
		h(w, r, c.Subject)
	}
}

func (f *fakeCairn) putHunt(w http.ResponseWriter, r *http.Request) {
	var h struct {
		Name         string  `json:"name"`
		ClaimRadiusM float64 `json:"claim_radius_m"`
		MaxSpeedMps  float64 `json:"max_speed_mps"`
	}
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
		problem(w, http.StatusBadRequest, "bad_json", "")
		return
	}
	f.mu.Lock()
	f.mu.hunts[r.PathValue("hunt")] = true
	f.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, `{}`)
}

func (f *fakeCairn) importSpots(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		problem(w, http.StatusUnsupportedMediaType, "media_type", "")
		return
	}
	h := r.PathValue("hunt")
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	n := 0
	for dec.More() {
		var s hunt.Hotspot
		if err := dec.Decode(&s); err != nil {
			problem(w, http.StatusBadRequest, "bad_json", fmt.Sprintf(`,"detail":"item %d: %s"`, n, err))
			return
		}
		if err := s.Normalize(); err != nil {
			problem(w, http.StatusBadRequest, "invalid", fmt.Sprintf(`,"detail":"item %d: %s"`, n, err))
			return
		}
		f.mu.Lock()
		old := f.mu.spots[h+"/"+string(s.ID)]
		sp := &fakeSpot{lat: s.Lat, lon: s.Lon, tickets: s.Tickets, reward: s.Reward, points: s.Points}
		if old != nil {
			sp.granted = old.granted
			sp.tickets = max(sp.tickets, old.granted)
		}
		f.mu.spots[h+"/"+string(s.ID)] = sp
		f.mu.Unlock()
		n++
	}
	fmt.Fprintf(w, `{"imported":%d}`, n)
}

// decide answers an idempotent request: a replay repeats the first answer.
func (f *fakeCairn) decide(w http.ResponseWriter, player, key, fp string, decide func(seq int64) (int, []byte)) {
	if !hunt.ValidKey(key) {
		problem(w, http.StatusBadRequest, "bad_idempotency_key", "")
		return
	}
	f.mu.Lock()
	k := player + "\x00" + key
	if a, ok := f.mu.idem[k]; ok && !f.noReplay {
		f.mu.Unlock()
		if a.fp != fp {
			problem(w, http.StatusUnprocessableEntity, "idempotency_key_reused", "")
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		w.Write(a.body)
		return
	}
	f.mu.seq++
	status, body := decide(f.mu.seq)
	f.mu.idem[k] = fakeAnswer{fp: fp, status: status, body: body}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func (f *fakeCairn) claim(w http.ResponseWriter, r *http.Request, player string) {
	var b struct{ Lat, Lon float64 }
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		problem(w, http.StatusBadRequest, "bad_json", "")
		return
	}
	h, id := r.PathValue("hunt"), r.PathValue("id")
	f.mu.Lock()
	s := f.mu.spots[h+"/"+id]
	f.mu.Unlock()
	if s == nil {
		problem(w, http.StatusNotFound, "unknown_hotspot", "")
		return
	}
	fp := fmt.Sprintf("%s/%s/%v/%v", h, id, b.Lat, b.Lon)
	f.decide(w, player, r.Header.Get("Idempotency-Key"), fp, func(seq int64) (int, []byte) {
		f.mu.claims++
		tok := "0." + strconv.FormatInt(seq, 10)
		reject := func(status int, out string) (int, []byte) {
			return status, fmt.Appendf(nil, `{"type":"https://cairn.dev/problems/%s","title":%q,"status":%d,"outcome":%q,"claim_id":%q}`,
				out, out, status, out, tok)
		}
		hk := player + "/" + h + "/" + id
		switch {
		case geo.DistanceM(b.Lat, b.Lon, s.lat, s.lon) > hunt.ClaimRadiusMDefault:
			return reject(http.StatusUnprocessableEntity, "too_far")
		case f.mu.holders[hk]:
			return reject(http.StatusConflict, "already_claimed")
		case s.granted >= s.tickets && !f.grantAll:
			return reject(http.StatusConflict, "sold_out")
		}
		s.granted++
		f.mu.holders[hk] = true
		f.mu.wallets[player] += s.reward
		for ch := range f.mu.subs {
			select {
			case ch <- fmt.Sprintf(`{"claim_id":%q,"player":%q,"at":%q}`, tok, player, time.Now().UTC().Format(time.RFC3339Nano)):
			default:
			}
		}
		return http.StatusCreated, fmt.Appendf(nil, `{"claim_id":%q,"player":%q,"hunt":%q,"hotspot":%q,"outcome":"granted","reward":%d,"points":%d,"tickets_left":%d,"consistency_token":%q}`,
			tok, player, h, id, s.reward, s.points, s.tickets-s.granted, tok)
	})
}

func (f *fakeCairn) spend(w http.ResponseWriter, r *http.Request, player string) {
	var b struct {
		Amount int64  `json:"amount"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Amount <= 0 {
		problem(w, http.StatusBadRequest, "bad_json", "")
		return
	}
	f.decide(w, player, r.Header.Get("Idempotency-Key"), fmt.Sprintf("spend/%d/%s", b.Amount, b.Reason), func(seq int64) (int, []byte) {
		if f.mu.wallets[player] < b.Amount {
			return http.StatusConflict, fmt.Appendf(nil, `{"type":"https://cairn.dev/problems/insufficient_funds","status":409,"outcome":"insufficient_funds","seq":%d}`, seq)
		}
		f.mu.wallets[player] -= b.Amount
		return http.StatusCreated, fmt.Appendf(nil, `{"player":%q,"balance":%d,"outcome":"spent","seq":%d}`, player, f.mu.wallets[player], seq)
	})
}

func (f *fakeCairn) wallet(w http.ResponseWriter, r *http.Request, player string) {
	f.mu.Lock()
	bal := f.mu.wallets[player]
	f.mu.Unlock()
	fmt.Fprintf(w, `{"player":%q,"balance":%d}`, player, bal)
}

func (f *fakeCairn) leaderboard(w http.ResponseWriter, r *http.Request, player string) {
	if a := r.URL.Query().Get("after"); a != "" {
		if _, err := hunt.ParseConsistencyToken(a); err != nil {
			problem(w, http.StatusBadRequest, "bad_after", "")
			return
		}
	}
	fmt.Fprint(w, `{"entries":[],"last_updated_epoch":0,"staleness_ms":3}`)
}

func (f *fakeCairn) events(w http.ResponseWriter, r *http.Request, player string) {
	ch := make(chan string, 256)
	f.mu.Lock()
	f.mu.subs[ch] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.mu.subs, ch)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	for sent := 0; f.sseDropAfter == 0 || sent < f.sseDropAfter; sent++ {
		select {
		case <-r.Context().Done():
			return
		case data := <-ch:
			fmt.Fprintf(w, "event: claim\ndata: %s\n\n", data)
			http.NewResponseController(w).Flush()
		}
	}
}

func (f *fakeCairn) audit(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	events := f.mu.seq
	f.mu.Unlock()
	if f.auditStatus != 0 {
		w.WriteHeader(f.auditStatus)
		fmt.Fprintf(w, `{"type":"https://cairn.dev/problems/invariant_violated","title":"invariant violated","status":%d,"report":{"ok":false,"events":%d,"checked":["I1","I2","I3","I4","I5","I7"],"violations":[{"invariant":"I1","detail":"hotspot h/x granted 3 > tickets 2"}],"violation_count":1}}`, f.auditStatus, events)
		return
	}
	fmt.Fprintf(w, `{"ok":true,"events":%d,"checked":["I1","I2","I3","I4","I5","I7"],"violations":[],"violation_count":0}`, events)
}
