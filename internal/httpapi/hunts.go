package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// huntBody is the body of PUT /v1/admin/hunts/{hunt}. "id", if sent, must
// equal the path's.
type huntBody struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	ClaimRadiusM float64   `json:"claim_radius_m"`
	// MaxSpeedMps is nil when left out: hunt.MaxSpeedMpsDefault. 0 turns
	// the check off, explicitly.
	MaxSpeedMps        *float64 `json:"max_speed_mps"`
	FeedShowsPlayerIDs bool     `json:"feed_shows_player_ids"`
}

var huntFields = []string{"id", "name", "starts_at", "ends_at", "claim_radius_m", "max_speed_mps", "feed_shows_player_ids"}

// putHunt answers PUT /v1/admin/hunts/{hunt}: 201 when it created the hunt,
// 200 when it replaced it; the body is the hunt as stored (defaults filled).
func (s *Server) putHunt(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	id := r.PathValue("hunt")
	if !hunt.ValidID(id) {
		s.writeError(w, r, hunt.Invalid("id", "must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", hunt.IDLenMax), nil)
		return
	}
	b, err := readBody(w, r, s.cfg.BodyLenMax, nil)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	var body huntBody
	if err := jsonwire.StrictUnmarshal(b, &body, huntFields, 0); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if body.ID != "" && body.ID != id {
		s.writeError(w, r, hunt.Invalid("id", "the body's id %s differs from the path's", fieldName(body.ID)), nil)
		return
	}
	h := hunt.Hunt{
		ID: hunt.HuntID(id), Name: body.Name, StartsAt: body.StartsAt, EndsAt: body.EndsAt,
		ClaimRadiusM: body.ClaimRadiusM, MaxSpeedMps: hunt.MaxSpeedMpsDefault, FeedShowsPlayerIDs: body.FeedShowsPlayerIDs,
	}
	if body.MaxSpeedMps != nil {
		h.MaxSpeedMps = *body.MaxSpeedMps
	}
	if err := h.Normalize(); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	status := http.StatusOK
	if _, err := s.eng.Hunt(r.Context(), h.ID); errors.Is(err, hunt.ErrUnknownHunt) {
		status = http.StatusCreated
	} else if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if err := s.eng.PutHunt(r.Context(), h); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.feed.setNamed(h.ID, h.FeedShowsPlayerIDs)
	s.writeJSON(w, r, status, h)
}

// adminGetHunt answers GET /v1/admin/hunts/{hunt}.
func (s *Server) adminGetHunt(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.answerHunt(w, r)
}

// getHunt answers GET /v1/hunts/{hunt}, the players' view (the same fields:
// a hunt holds nothing secret).
func (s *Server) getHunt(w http.ResponseWriter, r *http.Request) {
	if _, err := s.auth.player(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.answerHunt(w, r)
}

func (s *Server) answerHunt(w http.ResponseWriter, r *http.Request) {
	h, err := s.huntOf(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.writeJSON(w, r, http.StatusOK, h)
}

// huntOf returns the path's hunt, or hunt.ErrUnknownHunt (also for an id
// that cannot exist).
func (s *Server) huntOf(r *http.Request) (hunt.Hunt, error) {
	id, ok := pathID(r, "hunt")
	if !ok {
		return hunt.Hunt{}, hunt.ErrUnknownHunt
	}
	return s.eng.Hunt(r.Context(), hunt.HuntID(id))
}

// adminListHunts answers GET /v1/admin/hunts.
func (s *Server) adminListHunts(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	hs, err := s.eng.Hunts(r.Context())
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if hs == nil {
		hs = []hunt.Hunt{}
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Hunts []hunt.Hunt `json:"hunts"`
	}{hs})
}

// nearby answers GET /v1/hunts/{hunt}/hotspots?lat=&lon=&radius_m=&limit=.
func (s *Server) nearby(w http.ResponseWriter, r *http.Request) {
	if _, err := s.auth.player(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	id, ok := pathID(r, "hunt")
	if !ok {
		s.writeError(w, r, hunt.ErrUnknownHunt, nil)
		return
	}
	q, err := parseQuery(r)
	var lat, lon, radius float64
	var limit int
	if err == nil {
		lat, err = q.float("lat", 0, -90, 90, true)
	}
	if err == nil {
		lon, err = q.float("lon", 0, -180, 180, true)
	}
	if err == nil {
		radius, err = q.float("radius_m", NearbyRadiusMDefault, 1, engine.NearbyRadiusMMax, false)
	}
	if err == nil {
		limit, err = q.int("limit", NearbyLimitDefault, 1, engine.NearbyLimitMax)
	}
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	views, err := s.eng.Nearby(r.Context(), hunt.HuntID(id), lat, lon, radius, limit)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if views == nil {
		views = []hunt.HotspotView{}
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Hotspots []hunt.HotspotView `json:"hotspots"`
	}{views})
}
