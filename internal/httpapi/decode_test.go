package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// FuzzToken: the authenticator never panics, and whatever it accepts is an
// HS256 token whose signature verifies under the secret, with a valid subject.
func FuzzToken(f *testing.F) {
	good, _ := MintToken([]byte(testSecret), "alice", time.Hour, time.Now())
	f.Add(good)
	f.Add(good + "x")
	f.Add(strings.Replace(good, ".", "..", 1))
	for _, tok := range badTokens(f) {
		f.Add(tok)
	}
	a := newAuthenticator([]byte(testSecret), testAdmin, "", "", time.Now)
	f.Fuzz(func(t *testing.T, tok string) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{"Bearer " + tok}
		p, err := a.player(r)
		if err != nil {
			if !errIsUnauthorized(err) {
				t.Fatalf("player(%q) = %v; want errUnauthorized", tok, err)
			}
			return
		}
		if !hunt.ValidID(string(p)) {
			t.Fatalf("player(%q) = %q: not a valid id", tok, p)
		}
		parts := strings.Split(strings.TrimSpace(tok), ".")
		if len(parts) != 3 {
			t.Fatalf("player(%q) accepted a token of %d segments", tok, len(parts))
		}
		head, _ := base64.RawURLEncoding.DecodeString(parts[0])
		var h struct {
			Alg string `json:"alg"`
		}
		if json.Unmarshal(head, &h) != nil || h.Alg != "HS256" {
			t.Fatalf("player(%q) accepted header %s", tok, head)
		}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		mac := hmac.New(sha256.New, []byte(testSecret))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("player(%q) accepted a token whose signature does not verify", tok)
		}
	})
}
