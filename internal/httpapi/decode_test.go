package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

func TestDecodeClaimBody(t *testing.T) {
	good := []struct {
		body     string
		lat, lon float64
	}{
		{`{"lat":48.8566,"lon":2.3522}`, 48.8566, 2.3522},
		{" \n{ \"lon\" : -2.5 ,\t\"lat\":-0.0 }\r\n", 0, -2.5},
		{`{"lat":4.88566e1,"lon":2E0}`, 48.8566, 2},
		{`{"l\u0061t":1,"lon":2}`, 1, 2},
		{`{"lat":90,"lon":-180}`, 90, -180},
	}
	for _, c := range good {
		lat, lon, err := decodeClaimBody([]byte(c.body))
		if err != nil || lat != c.lat || lon != c.lon {
			t.Errorf("decodeClaimBody(%s) = %v, %v, %v; want %v, %v, nil", c.body, lat, lon, err, c.lat, c.lon)
		}
	}
	bad := []string{
		``, ` `, `null`, `[]`, `"lat"`, `1`, `{}`, `{"lat":1}`, `{"lon":1}`,
		`{"lat":1,"lon":2,"lat":1}`, `{"lat":1,"lon":2,"x":null}`, `{"Lat":1,"lon":2}`,
		`{"lat":"1","lon":2}`, `{"lat":null,"lon":2}`, `{"lat":[1],"lon":2}`, `{"lat":{"v":1},"lon":2}`,
		`{"lat":1e999,"lon":2}`, `{"lat":-1e999,"lon":2}`, `{"lat":NaN,"lon":2}`, `{"lat":1,"lon":2}x`,
		`{"lat":1,"lon":2}{}`, `{"lat":1,"lon":2,}`, `{"lat":01,"lon":2}`, `{"lat":+1,"lon":2}`, `{"lat":.5,"lon":2}`,
		`{"lat":1,"lon":2` /* unterminated */, "{\"lat\":1,\"lon\":2}\x00",
	}
	for _, b := range bad {
		if lat, lon, err := decodeClaimBody([]byte(b)); err == nil {
			t.Errorf("decodeClaimBody(%q) = %v, %v, nil; want an error", b, lat, lon)
		}
	}
}

func TestDecodeSpendBody(t *testing.T) {
	good := []struct {
		body   string
		amount int64
		reason string
	}{
		{`{"amount":5}`, 5, ""},
		{`{"reason":"caf\u00e9 \"x\"","amount":1000000}`, 1000000, `café "x"`},
		{`{"amount":-3}`, -3, ""}, // an integer; Check refuses it, with its own message
	}
	for _, c := range good {
		amount, reason, err := decodeSpendBody([]byte(c.body))
		if err != nil || amount != c.amount || reason != c.reason {
			t.Errorf("decodeSpendBody(%s) = %d, %q, %v; want %d, %q, nil", c.body, amount, reason, err, c.amount, c.reason)
		}
	}
	bad := []string{
		`{}`, `{"amount":1.5}`, `{"amount":1e3}`, `{"amount":"3"}`, `{"amount":1.0}`, `{"amount":-0.5}`,
		`{"amount":99999999999999999999}`, `{"amount":1,"reason":3}`, `{"amount":1,"reason":null}`,
		`{"amount":1,"amount":1}`, `{"amount":1,"note":"x"}`, `{"amount":true}`, `[1]`, `{"amount":1} 1`,
	}
	for _, b := range bad {
		if amount, _, err := decodeSpendBody([]byte(b)); err == nil {
			t.Errorf("decodeSpendBody(%s) = %d, nil; want an error", b, amount)
		}
	}
}

// strictJSON decodes b the way encoding/json does with its strictest
// options: DisallowUnknownFields and nothing after the value.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errMalformed
	}
	_, err := dec.Token()
	if err == nil {
		return errMalformed
	}
	return nil
}

// FuzzClaimBody: the hand-written decoder never panics, and whatever it
// accepts, encoding/json accepts too, with the same finite values.
func FuzzClaimBody(f *testing.F) {
	for _, s := range []string{`{"lat":48.8566,"lon":2.3522}`, `{"lon":-2.5,"lat":0}`, `{"l\u0061t":1,"lon":2}`,
		`{"lat":1,"lon":2,"lat":3}`, `{"lat":"1","lon":2}`, `{"lat":1e400,"lon":2}`, `{"lat":{"a":[1,"}"]},"lon":2}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lat, lon, err := decodeClaimBody(b)
		if err != nil {
			if _, ok := classify(err); !ok {
				t.Fatalf("decodeClaimBody(%q) error %v is not in the problem table", b, err)
			}
			return
		}
		var v struct {
			Lat *float64 `json:"lat"`
			Lon *float64 `json:"lon"`
		}
		if jerr := strictJSON(b, &v); jerr != nil || v.Lat == nil || v.Lon == nil || *v.Lat != lat || *v.Lon != lon {
			t.Fatalf("decodeClaimBody(%q) = %v, %v; encoding/json says %+v, %v", b, lat, lon, v, jerr)
		}
		if math.IsNaN(lat) || math.IsInf(lat, 0) || math.IsNaN(lon) || math.IsInf(lon, 0) {
			t.Fatalf("decodeClaimBody(%q) = %v, %v: not finite", b, lat, lon)
		}
	})
}

// FuzzSpendBody: as FuzzClaimBody, and an accepted amount was written as an integer.
func FuzzSpendBody(f *testing.F) {
	for _, s := range []string{`{"amount":5}`, `{"amount":5,"reason":"x\u0000y"}`, `{"amount":1.5}`, `{"amount":"3"}`,
		`{"amount":-3}`, `{"amount":1e3}`, `{"reason":"\ud800","amount":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		amount, reason, err := decodeSpendBody(b)
		if err != nil {
			if _, ok := classify(err); !ok {
				t.Fatalf("decodeSpendBody(%q) error %v is not in the problem table", b, err)
			}
			return
		}
		var v struct {
			Amount *json.Number `json:"amount"`
			Reason string       `json:"reason"`
		}
		if jerr := strictJSON(b, &v); jerr != nil || v.Amount == nil || v.Reason != reason {
			t.Fatalf("decodeSpendBody(%q) = %d, %q; encoding/json says %+v, %v", b, amount, reason, v, jerr)
		}
		if n, err := v.Amount.Int64(); err != nil || n != amount || strings.ContainsAny(v.Amount.String(), ".eE") {
			t.Fatalf("decodeSpendBody(%q) = %d; the amount was written %s", b, amount, v.Amount.String())
		}
	})
}

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
