package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/leaderboard"
)

// leaderboardAnswer is the body of GET /v1/hunts/{hunt}/leaderboard.
type leaderboardAnswer struct {
	Entries []leaderboard.Entry `json:"entries"`
	// Ranked is set for around=me: false when the player has no score yet.
	Ranked *bool `json:"ranked,omitempty"`
	// LastUpdatedEpoch is the unix ms commit time of the newest event applied
	// to the projection, 0 if none.
	LastUpdatedEpoch int64 `json:"last_updated_epoch"`
	// StalenessMs bounds how stale the answer may be: 0 when caught up.
	StalenessMs int64 `json:"staleness_ms"`
}

// leaderboard answers GET /v1/hunts/{hunt}/leaderboard?limit=&offset=&region=&around=me&after=.
// The board is public; around=me needs a player token. A token, if sent, must be valid.
func (s *Server) leaderboard(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	around, _, err := q.get("around")
	if err == nil && around != "" && around != "me" {
		err = hunt.Invalid("around", "the only value is \"me\"")
	}
	var player hunt.PlayerID
	if err == nil {
		if _, present := bearer(r); present || around == "me" {
			player, err = s.auth.player(r)
		}
	}
	var limit, offset int
	if err == nil {
		limit, err = q.int("limit", LeaderboardLimitDefault, 1, LeaderboardLimitMax)
	}
	if err == nil {
		offset, err = q.int("offset", 0, 0, LeaderboardOffsetMax)
		if err == nil && around == "me" && offset != 0 {
			err = hunt.Invalid("offset", "cannot be combined with around=me")
		}
	}
	region, _, rerr := q.get("region")
	if err == nil {
		err = rerr
	}
	if err == nil && region != "" && !validRegion(region, s.cfg.RegionLenMax) {
		err = hunt.Invalid("region", "must be a geohash prefix of 1-%d characters", s.cfg.RegionLenMax)
	}
	var after hunt.Epoch
	var hasAfter bool
	if err == nil {
		after, hasAfter, err = q.after(s.partitions)
	}
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	h, err := s.huntOf(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if hasAfter {
		if err := s.waitFor(r.Context(), after); err != nil {
			s.writeError(w, r, err, nil)
			return
		}
	}
	var ans leaderboardAnswer
	var page leaderboard.Page
	if around == "me" {
		var ranked bool
		page, ranked = s.board.Around(h.ID, region, player, limit)
		ans.Ranked = &ranked
	} else {
		page = s.board.Top(h.ID, region, offset, limit)
	}
	ans.Entries = page.Entries
	if ans.Entries == nil {
		ans.Entries = []leaderboard.Entry{}
	}
	if !page.LastUpdated.IsZero() {
		ans.LastUpdatedEpoch = page.LastUpdated.UnixMilli()
	}
	ans.StalenessMs = page.Staleness.Milliseconds()
	s.writeJSON(w, r, http.StatusOK, ans)
}

// waitFor waits until the board has applied e, at most AfterWaitMax. Running
// out of that time is errNotCaughtUp (503 + Retry-After): the read never
// answers data older than the token it was given.
func (s *Server) waitFor(ctx context.Context, e hunt.Epoch) error {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.AfterWaitMax)
	defer cancel()
	err := s.board.Wait(wctx, e)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err() // the request's own deadline or cancellation
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: epoch %v after %v", errNotCaughtUp, e, s.cfg.AfterWaitMax)
	}
	return err
}

// The projection is the Board cmd/ wires in.
var _ Board = (*leaderboard.Projection)(nil)
