package httpapi

import (
	"strconv"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/jsonwire"
)

// The answers to claims and spends, and the SSE frames, are written by hand
// with jsonwire's append functions: they are rendered from the recorded event
// alone, in a fixed field order, so the same event always gives the same bytes
// (a replay is byte-identical, I3), and the claim path formats no strings and
// builds no maps (STYLE habit 6).

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
	dst = appendEpoch(jsonwire.AppendKey(dst, "epoch"), ev.Epoch)
	return appendTokenString(jsonwire.AppendKey(dst, "consistency_token"), ev.Epoch)
}

// appendProblemHead opens a problem document: type, title, status, detail, code.
func appendProblemHead(dst []byte, p problemType, detail string) []byte {
	dst = append(dst, '{')
	dst = append(dst, `"type":"`+problemBase...)
	dst = append(dst, p.code...)
	dst = append(dst, '"')
	dst = jsonwire.AppendStringField(dst, "title", p.title)
	dst = jsonwire.AppendIntField(dst, "status", int64(p.status))
	dst = jsonwire.AppendStringField(dst, "detail", detail)
	return jsonwire.AppendStringField(dst, "code", p.code)
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
		dst = jsonwire.AppendStringField(dst, "outcome", ev.Outcome.String())
		dst = jsonwire.AppendIntField(dst, "reward", ev.Reward)
		dst = jsonwire.AppendIntField(dst, "points", ev.Points)
		dst = jsonwire.AppendIntField(dst, "tickets_left", ev.TicketsLeft)
		dst = appendEventIDs(dst, ev)
		return append(dst, '}'), 201, true
	}
	p, ok := outcomeProblem(ev.Outcome)
	if !ok {
		return dst, 0, false
	}
	dst = appendProblemHead(dst, p.problemType, p.detail)
	dst = jsonwire.AppendStringField(dst, "outcome", ev.Outcome.String())
	dst = appendClaimIDs(dst, ev)
	dst = jsonwire.AppendIntField(dst, "tickets_left", ev.TicketsLeft)
	dst = appendEventIDs(dst, ev)
	return append(dst, '}'), p.status, true
}

func appendClaimIDs(dst []byte, ev *hunt.Event) []byte {
	dst = jsonwire.AppendKey(dst, "claim_id")
	dst = appendTokenString(dst, ev.Epoch)
	dst = jsonwire.AppendStringField(dst, "player", string(ev.Player))
	dst = jsonwire.AppendStringField(dst, "hunt", string(ev.Hunt))
	return jsonwire.AppendStringField(dst, "hotspot", string(ev.Hotspot))
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
	dst = jsonwire.AppendKey(dst, "spend_id")
	dst = appendTokenString(dst, ev.Epoch)
	dst = jsonwire.AppendStringField(dst, "player", string(ev.Player))
	dst = jsonwire.AppendStringField(dst, "outcome", ev.Outcome.String())
	dst = jsonwire.AppendIntField(dst, "amount", ev.Amount)
	dst = jsonwire.AppendStringField(dst, "reason", ev.Reason)
	dst = jsonwire.AppendIntField(dst, "balance", ev.Balance)
	dst = appendEventIDs(dst, ev)
	return append(dst, '}'), status, true
}

// sseTimeLayout writes event times at the log's precision (milliseconds), so
// a frame reads the same before and after a restart.
const sseTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendClaimFrame appends one Server-Sent Events frame for a ClaimCompleted
// event: `id:` is its position in its ring (see hub), `event: claim`, and one
// `data:` line whose player is player (the id or its pseudonym).
func appendClaimFrame(dst []byte, gen, pos uint64, ev *hunt.Event, player string) []byte {
	dst = append(dst, "id: "...)
	dst = appendPosition(dst, gen, pos)
	dst = append(dst, "\nevent: claim\ndata: {"...)
	dst = jsonwire.AppendKey(dst, "claim_id")
	dst = appendTokenString(dst, ev.Epoch)
	dst = jsonwire.AppendStringField(dst, "player", player)
	dst = jsonwire.AppendStringField(dst, "hunt", string(ev.Hunt))
	dst = jsonwire.AppendStringField(dst, "hotspot", string(ev.Hotspot))
	dst = jsonwire.AppendStringField(dst, "outcome", ev.Outcome.String())
	dst = jsonwire.AppendIntField(dst, "points", ev.Points)
	dst = jsonwire.AppendIntField(dst, "tickets_left", ev.TicketsLeft)
	dst = appendEpoch(jsonwire.AppendKey(dst, "epoch"), ev.Epoch)
	dst = jsonwire.AppendKey(dst, "at")
	dst = append(dst, '"')
	dst = ev.At.UTC().Truncate(time.Millisecond).AppendFormat(dst, sseTimeLayout)
	return append(dst, "\"}\n\n"...)
}
