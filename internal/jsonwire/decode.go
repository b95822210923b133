package jsonwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// ErrMalformed is wrapped by every error about the syntax of a body (as
// opposed to the value of a field, a hunt.ValidationError).
var ErrMalformed = errors.New("malformed JSON")

// Malformed wraps ErrMalformed with what is wrong.
func Malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// syntaxError describes why b is not one JSON value (slow path, errors only).
func syntaxError(b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return Malformed("the body is empty; want a JSON object")
	}
	var v json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		return Malformed("%v", err)
	}
	return Malformed("the body is not one JSON value")
}

// objIter walks the members of a JSON object in bytes that json.Valid has
// accepted; it cannot meet a syntax error, so it only tracks positions.
type objIter struct {
	b        []byte
	i        int
	key, val []byte // the current member: key unquoted (escapes kept), raw value
	escaped  bool   // key holds a backslash escape
	started  bool
}

// IsSpace reports whether c is JSON white space.
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (it *objIter) skipSpace() {
	for it.i < len(it.b) && IsSpace(it.b[it.i]) {
		it.i++
	}
}

// newObjIter starts iterating b, which must be valid JSON; false if it is not an object.
func newObjIter(b []byte) (objIter, bool) {
	it := objIter{b: b}
	it.skipSpace()
	if it.i >= len(b) || b[it.i] != '{' {
		return it, false
	}
	it.i++
	return it, true
}

// next advances to the next member; false at the closing brace.
func (it *objIter) next() bool {
	it.skipSpace()
	if it.b[it.i] == '}' {
		return false
	}
	if it.started {
		it.i++ // the comma
		it.skipSpace()
	}
	it.started = true
	start := it.i + 1
	it.skipString()
	it.key = it.b[start : it.i-1]
	it.escaped = bytes.IndexByte(it.key, '\\') >= 0
	it.skipSpace()
	it.i++ // the colon
	it.skipSpace()
	vs := it.i
	it.skipValue()
	it.val = it.b[vs:it.i]
	return true
}

// skipString moves past the string starting at the opening quote at it.i.
func (it *objIter) skipString() {
	it.i++
	for it.b[it.i] != '"' {
		if it.b[it.i] == '\\' {
			it.i++
		}
		it.i++
	}
	it.i++
}

// skipValue moves past one value starting at it.i.
func (it *objIter) skipValue() {
	switch it.b[it.i] {
	case '"':
		it.skipString()
	case '{', '[':
		depth := 0
		for {
			switch it.b[it.i] {
			case '"':
				it.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			it.i++
			if depth == 0 {
				return
			}
		}
	default: // number, true, false, null
		for it.i < len(it.b) {
			switch it.b[it.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			it.i++
		}
	}
}

// keyIs reports whether the current key is name, decoding escapes if any.
func (it *objIter) keyIs(name string) bool {
	if !it.escaped {
		return string(it.key) == name
	}
	return it.keyString() == name
}

// keyString is the current key decoded (allocates; for errors and escaped keys).
func (it *objIter) keyString() string {
	if !it.escaped {
		return string(it.key)
	}
	var s string
	q := make([]byte, 0, len(it.key)+2)
	q = append(append(append(q, '"'), it.key...), '"')
	if json.Unmarshal(q, &s) != nil {
		return string(it.key)
	}
	return s
}

func unknownField(it *objIter) error {
	return hunt.Invalid(it.keyString(), "unknown field")
}

func duplicateField(name string) error {
	return hunt.Invalid(name, "given more than once")
}

// parseFloat parses a JSON number value as a finite float64.
func parseFloat(field string, val []byte) (float64, error) {
	if len(val) == 0 || (val[0] != '-' && (val[0] < '0' || val[0] > '9')) {
		return 0, hunt.Invalid(field, "must be a number")
	}
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, hunt.Invalid(field, "must be a finite number")
	}
	return f, nil
}

// DecodeClaim decodes `{"lat": <number>, "lon": <number>}`, both required.
func DecodeClaim(b []byte) (lat, lon float64, err error) {
	if !json.Valid(b) {
		return 0, 0, syntaxError(b)
	}
	it, ok := newObjIter(b)
	if !ok {
		return 0, 0, Malformed("the body must be a JSON object")
	}
	var haveLat, haveLon bool
	for it.next() {
		switch {
		case it.keyIs("lat"):
			if haveLat {
				return 0, 0, duplicateField("lat")
			}
			haveLat = true
			if lat, err = parseFloat("lat", it.val); err != nil {
				return 0, 0, err
			}
		case it.keyIs("lon"):
			if haveLon {
				return 0, 0, duplicateField("lon")
			}
			haveLon = true
			if lon, err = parseFloat("lon", it.val); err != nil {
				return 0, 0, err
			}
		default:
			return 0, 0, unknownField(&it)
		}
	}
	if !haveLat {
		return 0, 0, hunt.Invalid("lat", "required")
	}
	if !haveLon {
		return 0, 0, hunt.Invalid("lon", "required")
	}
	return lat, lon, nil
}

// DecodeSpend decodes `{"amount": <integer>, "reason": <string>}`;
// amount is required and must be written as a plain integer (1.5, 1e3, "3"
// are refused: an amount of money is never rounded or converted).
func DecodeSpend(b []byte) (amount int64, reason string, err error) {
	if !json.Valid(b) {
		return 0, "", syntaxError(b)
	}
	it, ok := newObjIter(b)
	if !ok {
		return 0, "", Malformed("the body must be a JSON object")
	}
	var haveAmount, haveReason bool
	for it.next() {
		switch {
		case it.keyIs("amount"):
			if haveAmount {
				return 0, "", duplicateField("amount")
			}
			haveAmount = true
			if amount, err = parseInteger("amount", it.val); err != nil {
				return 0, "", err
			}
		case it.keyIs("reason"):
			if haveReason {
				return 0, "", duplicateField("reason")
			}
			haveReason = true
			if len(it.val) == 0 || it.val[0] != '"' {
				return 0, "", hunt.Invalid("reason", "must be a string")
			}
			if err := json.Unmarshal(it.val, &reason); err != nil {
				return 0, "", hunt.Invalid("reason", "must be a string")
			}
		default:
			return 0, "", unknownField(&it)
		}
	}
	if !haveAmount {
		return 0, "", hunt.Invalid("amount", "required")
	}
	return amount, reason, nil
}

// parseInteger parses a JSON number written as an integer (optional minus, digits only).
func parseInteger(field string, val []byte) (int64, error) {
	digits := val
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, hunt.Invalid(field, "must be an integer")
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, hunt.Invalid(field, "must be an integer")
		}
	}
	n, err := strconv.ParseInt(string(val), 10, 64)
	if err != nil {
		return 0, hunt.Invalid(field, "out of range")
	}
	return n, nil
}

// StrictUnmarshal decodes one JSON object b into v with the strict rules:
// every key must be one of fields (exact case), at most once, and every field
// whose bit is set in required must be present.
func StrictUnmarshal(b []byte, v any, fields []string, required uint64) error {
	if !json.Valid(b) {
		return syntaxError(b)
	}
	it, ok := newObjIter(b)
	if !ok {
		return Malformed("want a JSON object")
	}
	var seen uint64
	for it.next() {
		i := 0
		for i < len(fields) && !it.keyIs(fields[i]) {
			i++
		}
		if i == len(fields) {
			return unknownField(&it)
		}
		if seen&(1<<i) != 0 {
			return duplicateField(fields[i])
		}
		seen |= 1 << i
		if len(it.val) > 0 && it.val[0] == 'n' {
			// null is not a value of any field: refuse it rather than
			// letting encoding/json keep the zero value silently.
			return hunt.Invalid(fields[i], "must not be null")
		}
	}
	for i := range fields {
		if required&(1<<i) != 0 && seen&(1<<i) == 0 {
			return hunt.Invalid(fields[i], "required")
		}
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return hunt.Invalid(te.Field, "must be a %s", jsonKind(te.Type.Kind().String()))
		}
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return hunt.Invalid("time", "must be an RFC 3339 time: %v", err)
		}
		return Malformed("%v", err)
	}
	return nil
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(k string) string {
	switch k {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "integer"
	case "float32", "float64":
		return "number"
	case "struct":
		return "string with an RFC 3339 time"
	}
	return k
}
