package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// revocations is the node's copy of the engine's token revocation list
// (player → tokens issued before this time are refused), so the check on
// every request costs a map lookup and no IO. It is loaded on first use and
// reloaded in the background every `every`, so a revocation made on another
// node (Redis) is seen here within that; one made here is seen at once.
type revocations struct {
	eng   engine.Engine
	every time.Duration
	now   func() time.Time

	loadMu   sync.Mutex  // one load at a time; the first request waits for it
	loaded   atomic.Bool // the list was read once
	lastLoad atomic.Int64
	loading  atomic.Bool // a background reload is running

	mu struct {
		sync.RWMutex
		m map[hunt.PlayerID]time.Time
	}
}

// revoked reports whether a token of player issued at iat (zero: unknown) is revoked.
func (r *revocations) revoked(player hunt.PlayerID, iat time.Time) (bool, error) {
	if !r.loaded.Load() {
		if err := r.load(false); err != nil {
			return false, err
		}
	} else if time.Duration(r.now().UnixNano()-r.lastLoad.Load()) > r.every && r.loading.CompareAndSwap(false, true) {
		go func() { // bounded by revocationLoadTimeout; at most one at a time
			defer r.loading.Store(false)
			_ = r.load(true) // a failed reload keeps the list it has; the next request retries
		}()
	}
	r.mu.RLock()
	before, ok := r.mu.m[player]
	r.mu.RUnlock()
	return ok && iat.Before(before), nil
}

// revocationLoadTimeout bounds one read of the whole list.
const revocationLoadTimeout = 5 * time.Second

// load reads the whole list; unless again, not when another caller read it
// meanwhile (the first requests all wait for one read).
func (r *revocations) load(again bool) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if !again && r.loaded.Load() {
		return nil
	}
	started := r.now()
	ctx, cancel := context.WithTimeout(context.Background(), revocationLoadTimeout)
	defer cancel()
	m := map[hunt.PlayerID]time.Time{}
	if err := r.eng.Revocations(ctx, func(p hunt.PlayerID, before time.Time) error {
		m[p] = before
		return nil
	}); err != nil {
		return fmt.Errorf("%w: reading the token revocation list: %v", engine.ErrUnavailable, err)
	}
	r.mu.Lock()
	// Keep what this node revoked while the read ran.
	for p, t := range r.mu.m {
		if t.After(m[p]) {
			m[p] = t
		}
	}
	r.mu.m = m
	r.mu.Unlock()
	r.lastLoad.Store(started.UnixNano())
	r.loaded.Store(true)
	return nil
}

// set records a revocation made by this node.
func (r *revocations) set(player hunt.PlayerID, before time.Time) {
	r.mu.Lock()
	if r.mu.m == nil {
		r.mu.m = map[hunt.PlayerID]time.Time{}
	}
	if before.After(r.mu.m[player]) {
		r.mu.m[player] = before
	}
	r.mu.Unlock()
}

var revokeFields = []string{"before"}

// revokeTokens answers POST /v1/admin/players/{player}/revoke-tokens: every
// token of the player issued before `before` (default: now) is refused from
// now on, on this node at once and on every node within
// RevocationRefresh. The player signs in again for a new token.
func (s *Server) revokeTokens(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.admin(r); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	player := r.PathValue("player")
	if !hunt.ValidID(player) {
		s.writeError(w, r, hunt.Invalid("player", "must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", hunt.IDLenMax), nil)
		return
	}
	b, err := readBody(w, r, s.cfg.BodyLenMax, nil)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	now := s.cfg.Clock()
	var body struct {
		Before *time.Time `json:"before"`
	}
	if len(b) > 0 {
		if err := jsonwire.StrictUnmarshal(b, &body, revokeFields, 0); err != nil {
			s.writeError(w, r, err, nil)
			return
		}
	}
	before := now
	if body.Before != nil {
		if body.Before.After(now) {
			s.writeError(w, r, hunt.Invalid("before", "%s is in the future; a revocation covers tokens already issued", body.Before.Format(time.RFC3339)), nil)
			return
		}
		before = *body.Before
	}
	before = before.UTC().Truncate(time.Millisecond)
	if err := s.eng.RevokeTokens(r.Context(), hunt.PlayerID(player), before); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	s.auth.revoked.set(hunt.PlayerID(player), before)
	s.writeJSON(w, r, http.StatusOK, struct {
		Player        string    `json:"player"`
		RevokedBefore time.Time `json:"revoked_before"`
	}{player, before})
}
