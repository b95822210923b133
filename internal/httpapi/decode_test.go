package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// FuzzImport: the import decoder never panics, hands put only normalized
// hotspots in chunks of at most engine.ImportBatchMax, and counts exactly.
func FuzzImport(f *testing.F) {
	item := `{"id":"a","lat":1,"lon":2,"tickets":1}`
	for _, s := range []string{item + "\n" + item, "[" + item + "," + item + "]", "[]", "[" + item, `{"id":"a"}`, "\n\n", "[1]",
		`[{"id":"a","lat":1,"lon":2,"tickets":1,"opens_at":"2030-01-01T00:00:00Z","closes_at":"2029-01-01T00:00:00Z"}]`} {
		f.Add("", []byte(s))
		f.Add("application/x-ndjson", []byte(s))
	}
	f.Fuzz(func(t *testing.T, ct string, b []byte) {
		total := 0
		n, err := importStream(ct, bytes.NewReader(b), func(hs []hunt.Hotspot) error {
			if len(hs) == 0 || len(hs) > engine.ImportBatchMax {
				t.Fatalf("put got %d hotspots", len(hs))
			}
			for _, h := range hs {
				if h.Geohash == "" || !geo.ValidCoord(h.Lat, h.Lon) || !hunt.ValidID(string(h.ID)) || h.Tickets < 0 {
					t.Fatalf("put got an unnormalized hotspot %+v", h)
				}
			}
			total += len(hs)
			return nil
		})
		if n != total {
			t.Fatalf("importStream = %d; put got %d", n, total)
		}
		if err != nil {
			if _, ok := classify(err); !ok {
				t.Fatalf("importStream(%q) error %v is not in the problem table", b, err)
			}
		}
	})
}

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
