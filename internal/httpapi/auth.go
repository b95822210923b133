package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
)

// authenticator checks player JWTs and the admin token. It is read-only after
// newAuthenticator and safe for concurrent use (jwt.Parser keeps no state
// between parses).
type authenticator struct {
	parser    *jwt.Parser
	keyfunc   jwt.Keyfunc
	adminHash [sha256.Size]byte
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
		parser: jwt.NewParser(opts...),
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
	var claims jwt.RegisteredClaims
	if _, err := a.parser.ParseWithClaims(tok, &claims, a.keyfunc); err != nil {
		return "", &authError{reason: "invalid token: " + err.Error(), invalid: true}
	}
	if !hunt.ValidID(claims.Subject) {
		return "", &authError{reason: "invalid token: sub must be a player id of 1-128 characters of letters, digits, '.', '_', ':' or '-'", invalid: true}
	}
	return hunt.PlayerID(claims.Subject), nil
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
