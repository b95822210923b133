package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Credential limits.
const (
	// SecretLenMin is the shortest accepted HS256 key in bytes: RFC 7518 §3.2
	// requires a key at least as long as the hash output (256 bits).
	SecretLenMin = 32
	// AdminTokenLenMin is the shortest accepted admin token in bytes.
	AdminTokenLenMin = 16
	// TokenLenMax bounds a bearer token in bytes, so a hostile header costs no
	// more than a bounded parse.
	TokenLenMax = 4096
	// tokenCacheLenMax bounds the verified-token cache (entries); at most
	// TokenLenMax+~100 bytes each, in practice ~300.
	tokenCacheLenMax = 1 << 16
	tokenCacheShards = 64
)

// authenticator checks player JWTs and the admin token. It is safe for
// concurrent use: the parser keeps no state between parses, and the cache
// has its own locks.
type authenticator struct {
	parser    *jwt.Parser
	keyfunc   jwt.Keyfunc
	validator *jwt.Validator // the parser's claim rules, for verifyFast
	macs      sync.Pool      // HMAC-SHA256 states keyed with the secret, for verifyFast
	adminHash [sha256.Size]byte
	clock     func() time.Time
	ttlMax    time.Duration // 0: no bound
	revoked   *revocations  // nil: no revocation check (unit tests)
	cache     tokenCache
}

// withTTLMax sets the longest token lifetime a accepts (0: any).
func (a *authenticator) withTTLMax(d time.Duration) *authenticator {
	a.ttlMax = d
	return a
}

// tokenCache remembers tokens that verified, keyed by the whole token string
// (signature included), with their subject and expiry. A player sends the
// same token with every request for hours; parsing it each time (base64,
// JSON, HMAC: ~45 allocations) would be most of the claim path's work. A hit
// re-checks expiry against the clock; nothing else in a verified token can
// turn invalid, because issuer and audience are fixed for the server's
// life. Only verified tokens enter, so garbage cannot fill it. It is bounded
// by sharded maps that are dropped whole when full: a dropped entry costs
// one more parse, never a wrong answer.
type tokenCache struct {
	shards [tokenCacheShards]struct {
		sync.RWMutex
		m map[string]cachedToken
	}
}

type cachedToken struct {
	player hunt.PlayerID
	iat    time.Time // zero when the token has none
	exp    time.Time
}

func (c *tokenCache) shard(tok string) int {
	// The signature's last characters are uniformly distributed.
	return int(tok[len(tok)-1]+tok[len(tok)-2]) % tokenCacheShards
}

func (c *tokenCache) get(tok string) (cachedToken, bool) {
	sh := &c.shards[c.shard(tok)]
	sh.RLock()
	ct, ok := sh.m[tok]
	sh.RUnlock()
	return ct, ok
}

func (c *tokenCache) put(tok string, ct cachedToken) {
	sh := &c.shards[c.shard(tok)]
	sh.Lock()
	if sh.m == nil || len(sh.m) >= tokenCacheLenMax/tokenCacheShards {
		sh.m = make(map[string]cachedToken)
	}
	sh.m[strings.Clone(tok)] = ct
	sh.Unlock()
}

func newAuthenticator(secret []byte, adminToken, issuer, audience string, clock func() time.Time) *authenticator {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(clock),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	key := append([]byte(nil), secret...)
	return &authenticator{
		parser:    jwt.NewParser(opts...),
		validator: jwt.NewValidator(opts...),
		macs:      sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
		// The method is already restricted by WithValidMethods; checking the
		// type again costs nothing and keeps the key HMAC-only if the options
		// ever change.
		keyfunc: func(t *jwt.Token) (any, error) {
			if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
				return nil, errors.New("unexpected signing method")
			}
			return key, nil
		},
		adminHash: sha256.Sum256([]byte(adminToken)),
		clock:     clock,
	}
}

// bearer returns the token of the request's single `Authorization: Bearer`
// header. present reports whether any Authorization header was sent.
func bearer(r *http.Request) (token string, present bool) {
	vs := r.Header["Authorization"]
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		return "", true
	}
	const scheme = "Bearer "
	v := vs[0]
	// The scheme is case-insensitive (RFC 9110 §11.1).
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", true
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// authError is a 401 with the reason for the detail; it wraps errUnauthorized.
// invalid marks a credential that was presented but refused (RFC 6750's
// error="invalid_token"), as opposed to a missing one.
type authError struct {
	reason  string
	invalid bool
}

func (e *authError) Error() string { return e.reason }
func (e *authError) Unwrap() error { return errUnauthorized }

var errNoBearer = &authError{reason: "missing bearer token: send Authorization: Bearer <token>"}

// player authenticates a player token and returns its subject.
func (a *authenticator) player(r *http.Request) (hunt.PlayerID, error) {
	tok, present := bearer(r)
	if !present {
		return "", errNoBearer
	}
	if tok == "" || len(tok) > TokenLenMax {
		return "", &authError{reason: "malformed Authorization header: want one `Bearer <token>`", invalid: true}
	}
	if len(tok) >= 2 {
		if ct, ok := a.cache.get(tok); ok {
			if !a.clock().Before(ct.exp) {
				return "", &authError{reason: "invalid token: token has invalid claims: token is expired", invalid: true}
			}
			return a.notRevoked(ct)
		}
	}
	var claims jwt.RegisteredClaims
	if !a.verifyFast(tok, &claims) {
		claims = jwt.RegisteredClaims{}
		if _, err := a.parser.ParseWithClaims(tok, &claims, a.keyfunc); err != nil {
			return "", &authError{reason: "invalid token: " + err.Error(), invalid: true}
		}
	}
	if !hunt.ValidID(claims.Subject) {
		return "", &authError{reason: "invalid token: sub must be a player id of 1-128 characters of letters, digits, '.', '_', ':' or '-'", invalid: true}
	}
	// The parser required exp, so ExpiresAt is set. A token checked once
	// enters the cache, so the lifetime is checked once per token.
	if a.ttlMax > 0 {
		from := a.clock()
		if claims.IssuedAt != nil {
			from = claims.IssuedAt.Time
		}
		if life := claims.ExpiresAt.Sub(from); life > a.ttlMax {
			return "", &authError{reason: fmt.Sprintf("invalid token: its lifetime (exp - iat) is %v, longer than the server's maximum %v", life.Round(time.Second), a.ttlMax), invalid: true}
		}
	}
	ct := cachedToken{player: hunt.PlayerID(claims.Subject), exp: claims.ExpiresAt.Time}
	if claims.IssuedAt != nil {
		ct.iat = claims.IssuedAt.Time
	}
	a.cache.put(tok, ct)
	return a.notRevoked(ct)
}

// fastHeaders are the encoded JOSE headers verifyFast takes: HS256, as
// MintToken and the common libraries write it. Any other header (another
// alg, a kid, other spacing) goes to the parser.
var fastHeaders = func() []string {
	var hs []string
	for _, h := range []string{`{"alg":"HS256","typ":"JWT"}`, `{"typ":"JWT","alg":"HS256"}`, `{"alg":"HS256"}`} {
		hs = append(hs, base64.RawURLEncoding.EncodeToString([]byte(h)))
	}
	return hs
}()

// verifyFast verifies tok as ParseWithClaims would, for the common shape
// only, and fills claims: a header of fastHeaders, an HMAC-SHA256 signature
// with the secret (a pooled HMAC state, not a new one per token), claims
// that json.Unmarshal decodes (as the parser does) and that the parser's own
// validator accepts. It accepts only tokens the parser accepts; false means
// "ask the parser", which gives the refusal its reason. A player's first
// request pays this once (a cached token skips it); the parser decodes the
// header into a map and builds an HMAC per token, about three times the work.
func (a *authenticator) verifyFast(tok string, claims *jwt.RegisteredClaims) bool {
	head, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	body, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sig, '.') >= 0 || len(sig) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	if !slices.Contains(fastHeaders, head) {
		return false
	}
	var want [sha256.Size]byte
	if n, err := base64.RawURLEncoding.Decode(want[:], []byte(sig)); err != nil || n != sha256.Size {
		return false
	}
	mac := a.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte(tok[:len(head)+1+len(body)]))
	var got [sha256.Size]byte
	mac.Sum(got[:0])
	a.macs.Put(mac)
	if !hmac.Equal(got[:], want[:]) {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(raw, claims) != nil {
		return false
	}
	return a.validator.Validate(claims) == nil
}

// notRevoked returns the token's player unless the player's tokens issued
// before the token's iat were revoked (a token without iat counts as issued
// before any revocation).
func (a *authenticator) notRevoked(ct cachedToken) (hunt.PlayerID, error) {
	if a.revoked == nil {
		return ct.player, nil
	}
	revoked, err := a.revoked.revoked(ct.player, ct.iat)
	if err != nil {
		return "", err
	}
	if revoked {
		return "", &authError{reason: "invalid token: revoked (the player's tokens issued before a time were revoked); sign in again", invalid: true}
	}
	return ct.player, nil
}

// admin authenticates the admin token. The comparison is of SHA-256 digests
// in constant time, so neither the token's bytes nor its length leak through
// timing.
func (a *authenticator) admin(r *http.Request) error {
	tok, present := bearer(r)
	if !present {
		return &authError{reason: "missing bearer token: admin routes take the admin token"}
	}
	sum := sha256.Sum256([]byte(tok))
	if tok == "" || len(tok) > TokenLenMax || subtle.ConstantTimeCompare(sum[:], a.adminHash[:]) != 1 {
		return &authError{reason: "invalid admin token: admin routes take only the admin token", invalid: true}
	}
	return nil
}

// MintToken signs an HS256 player token for player, valid for ttl from now,
// with the claims the server requires (sub, iat, exp). It is what `cairn
// token` and the load generator use; for a server configured with an issuer
// or audience use MintTokenFor.
func MintToken(secret []byte, player hunt.PlayerID, ttl time.Duration, now time.Time) (string, error) {
	return MintTokenFor(secret, player, ttl, now, "", "")
}

// MintTokenFor is MintToken with the iss and aud claims set (each when non-empty).
func MintTokenFor(secret []byte, player hunt.PlayerID, ttl time.Duration, now time.Time, issuer, audience string) (string, error) {
	var errs []error
	if len(secret) < SecretLenMin {
		errs = append(errs, fmt.Errorf("secret: %d bytes; want at least %d", len(secret), SecretLenMin))
	}
	if !hunt.ValidID(string(player)) {
		errs = append(errs, fmt.Errorf("player %q: must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", player, hunt.IDLenMax))
	}
	if ttl <= 0 {
		errs = append(errs, fmt.Errorf("ttl %v: must be positive", ttl))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	claims := jwt.RegisteredClaims{
		Subject:   string(player),
		Issuer:    issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	if audience != "" {
		claims.Audience = jwt.ClaimStrings{audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
