package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Token revocations: one r/<player> key each (see the key layout in
// store.go), written synced outside the event log, since a revocation
// decides nothing about tickets or wallets. They are few (one per player an
// operator acted on) and read whole by Revocations.

const revokePrefix = "r/"

func revokeKey(p hunt.PlayerID) []byte { return append([]byte(revokePrefix), p...) }

// RevokeTokens records, synced, that the player's tokens issued before
// `before` are refused, keeping the later of it and any earlier record.
func (e *Engine) RevokeTokens(ctx context.Context, player hunt.PlayerID, before time.Time) error {
	if !hunt.ValidID(string(player)) {
		return hunt.Invalid("player", "must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", hunt.IDLenMax)
	}
	if err := e.writable(); err != nil {
		return err
	}
	ms := before.UnixMilli()
	if ms < 0 {
		return hunt.Invalid("before", "must be after 1970")
	}
	e.revokeMu.Lock()
	defer e.revokeMu.Unlock()
	key := revokeKey(player)
	v, closer, err := e.db.Get(key)
	switch {
	case err == nil:
		old := int64(binary.BigEndian.Uint64(v))
		closer.Close()
		if old >= ms {
			return nil
		}
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("%w: read revocation of %s: %v", engine.ErrUnavailable, player, err)
	}
	if err := e.db.Set(key, binary.BigEndian.AppendUint64(nil, uint64(ms)), pebble.Sync); err != nil {
		return fmt.Errorf("%w: revoke tokens of %s: %v", engine.ErrUnavailable, player, err)
	}
	return nil
}

// Revocations calls fn for every recorded revocation.
func (e *Engine) Revocations(ctx context.Context, fn func(hunt.PlayerID, time.Time) error) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	it, err := e.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte(revokePrefix),
		UpperBound: []byte("r0"), // '0' follows '/'
	})
	if err != nil {
		return fmt.Errorf("%w: read revocations: %v", engine.ErrUnavailable, err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		player := bytes.TrimPrefix(it.Key(), []byte(revokePrefix))
		v := it.Value()
		if len(v) != 8 {
			return fmt.Errorf("revocation of %s: %d bytes; want 8", player, len(v))
		}
		if err := fn(hunt.PlayerID(player), time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC()); err != nil {
			return err
		}
	}
	return it.Error()
}
