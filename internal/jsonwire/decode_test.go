package jsonwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

func TestDecodeClaim(t *testing.T) {
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
		lat, lon, err := DecodeClaim([]byte(c.body))
		if err != nil || lat != c.lat || lon != c.lon {
			t.Errorf("DecodeClaim(%s) = %v, %v, %v; want %v, %v, nil", c.body, lat, lon, err, c.lat, c.lon)
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
		if lat, lon, err := DecodeClaim([]byte(b)); err == nil {
			t.Errorf("DecodeClaim(%q) = %v, %v, nil; want an error", b, lat, lon)
		}
	}
}

func TestDecodeSpend(t *testing.T) {
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
		amount, reason, err := DecodeSpend([]byte(c.body))
		if err != nil || amount != c.amount || reason != c.reason {
			t.Errorf("DecodeSpend(%s) = %d, %q, %v; want %d, %q, nil", c.body, amount, reason, err, c.amount, c.reason)
		}
	}
	bad := []string{
		`{}`, `{"amount":1.5}`, `{"amount":1e3}`, `{"amount":"3"}`, `{"amount":1.0}`, `{"amount":-0.5}`,
		`{"amount":99999999999999999999}`, `{"amount":1,"reason":3}`, `{"amount":1,"reason":null}`,
		`{"amount":1,"amount":1}`, `{"amount":1,"note":"x"}`, `{"amount":true}`, `[1]`, `{"amount":1} 1`,
	}
	for _, b := range bad {
		if amount, _, err := DecodeSpend([]byte(b)); err == nil {
			t.Errorf("DecodeSpend(%s) = %d, nil; want an error", b, amount)
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
		return ErrMalformed
	}
	_, err := dec.Token()
	if err == nil {
		return ErrMalformed
	}
	return nil
}

// knownError reports whether err is one of the two classes a caller maps to
// an answer (the HTTP layer's problem table has a row for each).
func knownError(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, hunt.ErrInvalid)
}

// FuzzClaimBody: the hand-written decoder never panics, and whatever it
// accepts, encoding/json accepts too, with the same finite values.
func FuzzClaimBody(f *testing.F) {
	for _, s := range []string{`{"lat":48.8566,"lon":2.3522}`, `{"lon":-2.5,"lat":0}`, `{"l\u0061t":1,"lon":2}`,
		`{"lat":1,"lon":2,"lat":3}`, `{"lat":"1","lon":2}`, `{"lat":1e400,"lon":2}`, `{"lat":{"a":[1,"}"]},"lon":2}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lat, lon, err := DecodeClaim(b)
		if err != nil {
			if !knownError(err) {
				t.Fatalf("DecodeClaim(%q) error %v wraps neither ErrMalformed nor hunt.ErrInvalid", b, err)
			}
			return
		}
		var v struct {
			Lat *float64 `json:"lat"`
			Lon *float64 `json:"lon"`
		}
		if jerr := strictJSON(b, &v); jerr != nil || v.Lat == nil || v.Lon == nil || *v.Lat != lat || *v.Lon != lon {
			t.Fatalf("DecodeClaim(%q) = %v, %v; encoding/json says %+v, %v", b, lat, lon, v, jerr)
		}
		if math.IsNaN(lat) || math.IsInf(lat, 0) || math.IsNaN(lon) || math.IsInf(lon, 0) {
			t.Fatalf("DecodeClaim(%q) = %v, %v: not finite", b, lat, lon)
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
		amount, reason, err := DecodeSpend(b)
		if err != nil {
			if !knownError(err) {
				t.Fatalf("DecodeSpend(%q) error %v wraps neither ErrMalformed nor hunt.ErrInvalid", b, err)
			}
			return
		}
		var v struct {
			Amount *json.Number `json:"amount"`
			Reason string       `json:"reason"`
		}
		if jerr := strictJSON(b, &v); jerr != nil || v.Amount == nil || v.Reason != reason {
			t.Fatalf("DecodeSpend(%q) = %d, %q; encoding/json says %+v, %v", b, amount, reason, v, jerr)
		}
		if n, err := v.Amount.Int64(); err != nil || n != amount || strings.ContainsAny(v.Amount.String(), ".eE") {
			t.Fatalf("DecodeSpend(%q) = %d; the amount was written %s", b, amount, v.Amount.String())
		}
	})
}
