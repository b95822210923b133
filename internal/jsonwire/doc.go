// Package jsonwire is Cairn's hand-written JSON codec for the request and
// answer bodies of the HTTP API.
//
// It decodes the claim body (`{"lat": <number>, "lon": <number>}`) and the
// spend body (`{"amount": <integer>, "reason": <string>}`) by hand, and the
// other request objects (hunts, hotspots) through StrictUnmarshal: the strict
// checks by hand, then encoding/json. It encodes JSON strings and object
// members with append functions (AppendString, AppendKey, AppendStringField,
// AppendIntField) into a caller's buffer, in the order the caller writes them.
//
// # Limits
//
// Decoding is strict: a body is exactly one JSON value (json.Valid, so
// trailing data, NaN and Infinity literals are refused), an object's field
// names match exactly (encoding/json would accept "LAT" for "lat"), a field
// appears at most once (encoding/json would keep the last), unknown fields are
// refused, numbers must be finite, and an amount is written as a plain integer.
// A syntax error wraps ErrMalformed; a wrong field is a hunt.ValidationError
// naming it. The package reads no streams: the caller bounds and reads the
// body first. StrictUnmarshal takes at most 64 field names (one bit each).
// AppendKey writes a member name as given: names are constants of the caller
// and are not escaped; AppendString escapes everything else, and its output
// is valid JSON whatever the string holds.
//
// # Why by hand
//
// The claim and spend paths are the hot path: encoding/json reflects over the
// target type and allocates for every value, while the object walker here
// works on the validated bytes in place (no reflection, no allocation for
// unescaped names and numbers), and the append encoders format no strings and
// build no maps. A fixed field order also means the same values always encode
// to the same bytes, which the idempotent replay of an answer relies on (I3).
//
// # Concurrency
//
// Every function is pure over its arguments and safe for concurrent use.
package jsonwire
