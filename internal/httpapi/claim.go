package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// claim answers POST /v1/hunts/{hunt}/hotspots/{id}/claim: authenticate,
// check the Idempotency-Key, decode the body, let the engine decide, render
// the answer from the recorded event. This is the hot path: one pooled
// buffer holds the body and then the answer, and nothing formats strings.
func (s *Server) claim(w http.ResponseWriter, r *http.Request) {
	var huntID, spotID string
	s.decide(w, r, s.claimLatency, func() error {
		var okH, okS bool
		huntID, okH = pathID(r, "hunt")
		spotID, okS = pathID(r, "id")
		if !okH {
			return hunt.ErrUnknownHunt
		}
		if !okS {
			return hunt.ErrUnknownHotspot
		}
		return nil
	}, func(player hunt.PlayerID, key string, body []byte) ([]byte, int, bool, error) {
		lat, lon, err := jsonwire.DecodeClaim(body)
		if err != nil {
			return nil, 0, false, err
		}
		req := hunt.ClaimRequest{
			Player: player, Key: key, Hunt: hunt.HuntID(huntID), Hotspot: hunt.HotspotID(spotID), Lat: lat, Lon: lon,
		}
		// The engine checks req (hunt.ClaimRequest.Check) once, for every caller.
		res, err := s.eng.Claim(r.Context(), &req)
		if err != nil {
			return nil, 0, false, err
		}
		out, status, ok := renderClaim(body[:0], &res.Event)
		if !ok {
			return out, 0, false, fmt.Errorf("engine answered a claim with event kind %d outcome %v", res.Event.Kind, res.Event.Outcome)
		}
		if status != 201 && !res.Replayed {
			s.noteRefusal(player, res.Event.Outcome)
		}
		return out, status, res.Replayed, nil
	})
}

// decide is the shape claims and spends share, timed into latency: authenticate, read the
// Idempotency-Key, run check (path parameters; may be nil), read the body
// into a pooled buffer, then run do, which decodes the body, asks the engine
// and renders the answer over the body's buffer. Every error is answered
// from the problem table.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, latency prometheus.Observer, check func() error,
	do func(player hunt.PlayerID, key string, body []byte) (out []byte, status int, replayed bool, err error)) {
	start := time.Now()
	defer func() { latency.Observe(time.Since(start).Seconds()) }()
	player, err := s.auth.player(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	key, err := idempotencyKey(r)
	if err == nil && check != nil {
		err = check()
	}
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	bp := s.buf()
	defer s.put(bp)
	body, err := readBody(w, r, s.cfg.BodyLenMax, (*bp)[:0])
	*bp = body
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	out, status, replayed, err := do(player, key, body)
	if out != nil {
		*bp = out
	}
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.writeDecision(w, status, replayed, out)
}

// writeDecision writes a rendered claim or spend answer.
func (s *Server) writeDecision(w http.ResponseWriter, status int, replayed bool, body []byte) {
	h := w.Header()
	if status < 300 {
		h["Content-Type"] = ctJSON
	} else {
		h["Content-Type"] = ctProblem
	}
	h["Cache-Control"] = hdrNoStore
	if replayed {
		h["Idempotent-Replayed"] = hdrTrue
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
