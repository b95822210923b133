// Package httpapi serves Cairn's HTTP API v1 (docs/openapi.yaml) on the
// standard library's net/http: admin hunts and the streamed hotspot import,
// nearby hotspots, claims and spends with Idempotency-Key semantics, wallets,
// leaderboards with read-your-writes, the Server-Sent Events feed,
// /v1/consistency, /metrics, /healthz and /readyz.
//
// It decides nothing itself: claims and spends go to an engine.Engine, and
// leaderboards come from a Board (the leaderboard projection). It only
// authenticates, validates, bounds and renders.
//
// # Invariants
//
//   - Every error is an RFC 9457 application/problem+json document whose status,
//     type URI and code come from the one table in problem.go. A 5xx never carries
//     internals; an unexpected error is logged and answered 500.
//   - A claim or spend answer is rendered from its recorded event alone
//     (render.go, with the encoder of internal/jsonwire), so the replay of a
//     decided request is byte-identical to the first answer (invariant I3);
//     replays add `Idempotent-Replayed: true`.
//   - Nothing is read without a bound: bodies through http.MaxBytesReader (413),
//     strict decoders (internal/jsonwire: exact field names, no duplicates, no
//     unknown fields, one JSON value, finite numbers), every query parameter
//     range-checked, every non-streaming request under a deadline. A deadline
//     that fires while a claim is in flight answers 503: the outcome is then
//     unknown, and the client retries with the same Idempotency-Key to learn it.
//   - A read with after=<consistency_token> either reflects that epoch or fails
//     with 503 + Retry-After; it never answers stale data as fresh.
//
// # Authentication
//
// Player routes take `Authorization: Bearer <JWT>`: HS256 only (the algorithm
// allow-list refuses `none`, RS256 and everything else), `exp` required, `iss`
// and `aud` checked when configured, and `sub` a valid player id. Admin routes
// (/v1/admin/*) take only the admin token, compared in constant time; any other
// credential there, a player token included, is 401 (not 403: the admin realm
// does not know players). The leaderboard is public unless around=me (a token
// sent there anyway must be valid); /v1/consistency, /metrics, /healthz and
// /readyz are public. A verified token is cached (bounded) with its expiry,
// so a player's repeated requests skip the JWT parse; expiry is still checked
// on every request.
//
// # Concurrency
//
// A Server is safe for concurrent use once New returns; it holds no per-request
// state. The SSE hub (Feed) is called from the engine's goroutines
// concurrently and never blocks them, whatever its subscribers do: it only
// queues a bounded copy of each claim decision, and renders the frames on its
// own goroutine. Each hunt has one bounded ring of recent frames that
// subscribers read at their own pace; a subscriber that falls further behind
// than the ring is disconnected and resumes with Last-Event-ID, told of the
// gap (feed.go). Grants are public, under a per-hunt pseudonym of the player
// by default; refusals go to their own player's streams only.
//
// # Hotspot import
//
// The import is decoded as a stream and upserted in chunks of
// engine.ImportBatchMax, so a large import never sits in memory whole. When an
// item is bad, every item before it is imported and nothing from it on: the
// 400 answer names the item's index and carries `imported` (the count of items
// imported), so a client can fix the item and resend from there. Upserts are
// idempotent, so resending the whole import is also correct. The same holds
// when the body is cut off or exceeds its cap (413): the complete items read
// before that point are imported, and `imported` says how many.
//
// Requests need no Content-Type for JSON bodies (curl -d sends a form type);
// the import uses it to tell NDJSON (application/x-ndjson) from a JSON array,
// and sniffs the first byte ('[' or '{') when it says neither.
package httpapi
