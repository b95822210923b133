package httpapi

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cairnhq/cairn/internal/hunt"
)

// The answers to claims and spends, and the SSE frames, are written by hand
// with append functions: they are rendered from the recorded event alone, in a
// fixed field order, so the same event always gives the same bytes (a replay
// is byte-identical, I3), and the claim path formats no strings and builds no
// maps (STYLE habit 6).

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes what JSON requires
// (quote, backslash, control characters), U+2028/U+2029 (as encoding/json
// does, for JavaScript consumers), and replaces invalid UTF-8 with U+FFFD, so
// the output is always valid JSON whatever s holds.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendKey appends `,"name":` (or `"name":` right after an opening brace).
// name is a constant of this package and needs no escaping.
func appendKey(dst []byte, name string) []byte {
	if n := len(dst); n > 0 && dst[n-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

func appendStringField(dst []byte, name, v string) []byte {
	return appendString(appendKey(dst, name), v)
}

func appendIntField(dst []byte, name string, v int64) []byte {
	return strconv.AppendInt(appendKey(dst, name), v, 10)
}

// appendEpoch appends {"partition":P,"seq":S}.
func appendEpoch(dst []byte, e hunt.Epoch) []byte {
	dst = append(dst, `{"partition":`...)
	dst = strconv.AppendUint(dst, uint64(e.Partition), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, uint64(e.Seq), 10)
	return append(dst, '}')
}

// appendTokenString appends the consistency token of e as a JSON string. It
// is hunt.ConsistencyToken(e), written without fmt; TestTokenMatchesHunt
// keeps the two equal.
func appendTokenString(dst []byte, e hunt.Epoch) []byte {
	dst = append(dst, '"')
	dst = appendToken(dst, e)
	return append(dst, '"')
}

func appendToken(dst []byte, e hunt.Epoch) []byte {
	dst = strconv.AppendUint(dst, uint64(e.Partition), 10)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, uint64(e.Seq), 10)
}

// appendEventIDs appends the members every claim and spend answer carries
// about its event: epoch and consistency_token.
func appendEventIDs(dst []byte, ev *hunt.Event) []byte {
	dst = appendEpoch(appendKey(dst, "epoch"), ev.Epoch)
	return appendTokenString(appendKey(dst, "consistency_token"), ev.Epoch)
}

// appendProblemHead opens a problem document: type, title, status, detail, code.
func appendProblemHead(dst []byte, p problemType, detail string) []byte {
	dst = append(dst, '{')
	dst = append(dst, `"type":"`+problemBase...)
	dst = append(dst, p.code...)
	dst = append(dst, '"')
	dst = appendStringField(dst, "title", p.title)
	dst = appendIntField(dst, "status", int64(p.status))
	dst = appendStringField(dst, "detail", detail)
	return appendStringField(dst, "code", p.code)
}

// renderClaim renders the answer to a claim from its event: 201 and the
// grant, or the outcome's problem (409/422) with the outcome and the claim's
// ids as extension members. ok is false for an event that is not a decided
// claim (a programmer error the caller answers 500).
func renderClaim(dst []byte, ev *hunt.Event) (out []byte, status int, ok bool) {
	if ev.Kind != hunt.KindClaimCompleted {
		return dst, 0, false
	}
	if ev.Outcome == hunt.Granted {
		dst = append(dst, '{')
		dst = appendClaimIDs(dst, ev)
		dst = appendStringField(dst, "outcome", ev.Outcome.String())
		dst = appendIntField(dst, "reward", ev.Reward)
		dst = appendIntField(dst, "points", ev.Points)
		dst = appendIntField(dst, "tickets_left", ev.TicketsLeft)
		dst = appendEventIDs(dst, ev)
		return append(dst, '}'), 201, true
	}
	p, ok := outcomeProblem(ev.Outcome)
	if !ok {
		return dst, 0, false
	}
	dst = appendProblemHead(dst, p.problemType, p.detail)
	dst = appendStringField(dst, "outcome", ev.Outcome.String())
	dst = appendClaimIDs(dst, ev)
	dst = appendIntField(dst, "tickets_left", ev.TicketsLeft)
	dst = appendEventIDs(dst, ev)
	return append(dst, '}'), p.status, true
}

func appendClaimIDs(dst []byte, ev *hunt.Event) []byte {
	dst = appendKey(dst, "claim_id")
	dst = appendTokenString(dst, ev.Epoch)
	dst = appendStringField(dst, "player", string(ev.Player))
	dst = appendStringField(dst, "hunt", string(ev.Hunt))
	return appendStringField(dst, "hotspot", string(ev.Hotspot))
}

// renderSpend renders the answer to a spend from its event: 201 with the new
// balance, or 409 insufficient_funds as a problem (see renderClaim).
func renderSpend(dst []byte, ev *hunt.Event) (out []byte, status int, ok bool) {
	if ev.Kind != hunt.KindSpendCompleted {
		return dst, 0, false
	}
	status = 201
	if ev.Outcome == hunt.Spent {
		dst = append(dst, '{')
	} else {
		p, ok := outcomeProblem(ev.Outcome)
		if !ok {
			return dst, 0, false
		}
		dst = appendProblemHead(dst, p.problemType, p.detail)
		status = p.status
	}
	dst = appendKey(dst, "spend_id")
	dst = appendTokenString(dst, ev.Epoch)
	dst = appendStringField(dst, "player", string(ev.Player))
	dst = appendStringField(dst, "outcome", ev.Outcome.String())
	dst = appendIntField(dst, "amount", ev.Amount)
	dst = appendStringField(dst, "reason", ev.Reason)
	dst = appendIntField(dst, "balance", ev.Balance)
	dst = appendEventIDs(dst, ev)
	return append(dst, '}'), status, true
}

// sseTimeLayout writes event times at the log's precision (milliseconds), so
// a frame reads the same before and after a restart.
const sseTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendClaimFrame appends one Server-Sent Events frame for a ClaimCompleted
// event: `id:` is its consistency token, `event: claim`, and one `data:` line.
func appendClaimFrame(dst []byte, ev *hunt.Event) []byte {
	dst = append(dst, "id: "...)
	dst = appendToken(dst, ev.Epoch)
	dst = append(dst, "\nevent: claim\ndata: {"...)
	dst = appendClaimIDs(dst, ev)
	dst = appendStringField(dst, "outcome", ev.Outcome.String())
	dst = appendIntField(dst, "points", ev.Points)
	dst = appendIntField(dst, "tickets_left", ev.TicketsLeft)
	dst = appendEpoch(appendKey(dst, "epoch"), ev.Epoch)
	dst = appendKey(dst, "at")
	dst = append(dst, '"')
	dst = ev.At.UTC().Truncate(time.Millisecond).AppendFormat(dst, sseTimeLayout)
	return append(dst, "\"}\n\n"...)
}
