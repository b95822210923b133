package httpapi

import (
	"fmt"
	"net/http"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// spend answers POST /v1/wallet/spend (see claim).
func (s *Server) spend(w http.ResponseWriter, r *http.Request) {
	s.decide(w, r, s.spendLatency, nil, func(player hunt.PlayerID, key string, body []byte) ([]byte, int, bool, error) {
		amount, reason, err := jsonwire.DecodeSpend(body)
		if err != nil {
			return nil, 0, false, err
		}
		req := hunt.SpendRequest{Player: player, Key: key, Amount: amount, Reason: reason}
		res, err := s.eng.Spend(r.Context(), &req) // checked by the engine, as claims are
		if err != nil {
			return nil, 0, false, err
		}
		out, status, ok := renderSpend(body[:0], &res.Event)
		if !ok {
			return out, 0, false, fmt.Errorf("engine answered a spend with event kind %d outcome %v", res.Event.Kind, res.Event.Outcome)
		}
		return out, status, res.Replayed, nil
	})
}

// wallet answers GET /v1/wallet?after=. The engines credit a wallet before
// the claim that credits it is answered, so a token from this player's own
// claim is always reflected already; after= is still validated, so a client
// bug shows up as a 400 rather than as a silently ignored parameter.
func (s *Server) wallet(w http.ResponseWriter, r *http.Request) {
	player, err := s.auth.player(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	q, err := parseQuery(r)
	if err == nil {
		_, _, err = q.after(s.partitions)
	}
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	wal, err := s.eng.Wallet(r.Context(), player)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	wal.Player = player
	s.writeJSON(w, r, http.StatusOK, wal)
}

// ledger answers GET /v1/wallet/ledger?limit=, newest first.
func (s *Server) ledger(w http.ResponseWriter, r *http.Request) {
	player, err := s.auth.player(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	q, err := parseQuery(r)
	var limit int
	if err == nil {
		limit, err = q.int("limit", LedgerLimitDefault, 1, engine.LedgerLimitMax)
	}
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	entries, err := s.eng.Ledger(r.Context(), player, limit)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if entries == nil {
		entries = []hunt.LedgerEntry{}
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Player  hunt.PlayerID      `json:"player"`
		Entries []hunt.LedgerEntry `json:"entries"`
	}{player, entries})
}
