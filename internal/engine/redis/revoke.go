package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Token revocations: one key per player, cairn:{u:<player>}:rev (unix ms),
// and the set cairn:revoked of the players that have one, so Revocations
// reads them without a SCAN. A revocation decides nothing about tickets or
// wallets, so it is not in the event log.

// revokeScript keeps the later of the recorded time and ARGV[1].
var revokeScript = goredis.NewScript(`
local old = tonumber(redis.call('GET', KEYS[1]) or '-1')
if old < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`)

// RevokeTokens records that the player's tokens issued before `before` are
// refused, keeping the later of it and any earlier record.
func (e *Engine) RevokeTokens(ctx context.Context, player hunt.PlayerID, before time.Time) error {
	if !hunt.ValidID(string(player)) {
		return hunt.Invalid("player", "must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", hunt.IDLenMax)
	}
	ms := before.UnixMilli()
	if ms < 0 {
		return hunt.Invalid("before", "must be after 1970")
	}
	// The index first: a crash between the two leaves a player listed with
	// no time (skipped), never a time nobody lists.
	if err := e.rdb.SAdd(ctx, keyRevoked, string(player)).Err(); err != nil {
		return e.callErr("revoke tokens", err)
	}
	if err := revokeScript.Run(ctx, e.rdb, []string{e.ks.revoke(player)}, ms).Err(); err != nil {
		return e.callErr("revoke tokens", err)
	}
	return nil
}

// Revocations calls fn for every recorded revocation.
func (e *Engine) Revocations(ctx context.Context, fn func(hunt.PlayerID, time.Time) error) error {
	players, err := e.rdb.SMembers(ctx, keyRevoked).Result()
	if err != nil {
		return e.callErr("read revocations", err)
	}
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(players))
	for i, p := range players {
		cmds[i] = pipe.Get(ctx, e.ks.revoke(hunt.PlayerID(p)))
	}
	if len(players) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return e.callErr("read revocations", err)
		}
	}
	for i, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		ms, perr := strconv.ParseInt(v, 10, 64)
		if err != nil || perr != nil {
			return fmt.Errorf("%w: revocation of %s: %q", errCorrupt, players[i], v)
		}
		if err := fn(hunt.PlayerID(players[i]), time.UnixMilli(ms).UTC()); err != nil {
			return err
		}
	}
	return nil
}
