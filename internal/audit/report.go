package audit

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Reporting: porcupine's HTML view of a check, and how it names operations
// and states.

// VisualizePath writes porcupine's HTML view of info to path.
func VisualizePath(info porcupine.LinearizationInfo, path string) error {
	return porcupine.VisualizePath(LinearizationModel(), info, path)
}

func describeOp(in0, out0 any) string {
	in, out := in0.(*input), out0.(*output)
	var b strings.Builder
	p := in.c.players[in.player]
	switch in.kind {
	case OpClaim:
		fmt.Fprintf(&b, "claim(%s, %s, %q)", p, in.c.hotspots[in.hotspot].ID, in.key)
	case OpSpend:
		fmt.Fprintf(&b, "spend(%s, %d, %q)", p, in.amount, in.key)
	case OpWallet:
		fmt.Fprintf(&b, "wallet(%s) → %d", p, out.count)
		return b.String()
	}
	switch {
	case out.unknown:
		b.WriteString(" → ?")
	case !out.detailed:
		fmt.Fprintf(&b, " → %v", out.outcome)
	case in.kind == OpClaim:
		fmt.Fprintf(&b, " → %v, %d left", out.outcome, out.count)
	default:
		fmt.Fprintf(&b, " → %v, balance %d", out.outcome, out.count)
	}
	return b.String()
}

func describeState(a any) string {
	s, _ := a.(*state)
	if s == nil {
		return "initial"
	}
	var b strings.Builder
	for h, hs := range s.c.hotspots {
		fmt.Fprintf(&b, "%s %d/%d [", hs.ID, s.granted[h], hs.Tickets)
		sep := ""
		for p, id := range s.c.players {
			if s.holds(h, p) {
				fmt.Fprintf(&b, "%s%s", sep, id)
				sep = " "
			}
		}
		b.WriteString("]; ")
	}
	for p, id := range s.c.players {
		fmt.Fprintf(&b, "%s=%d ", id, s.balance[p])
	}
	return strings.TrimSpace(b.String())
}
