package redis

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// seqSink records the seqs it is fed, per call.
type seqSink struct{ calls [][]hunt.Seq }

func (s *seqSink) Committed(_ geo.Partition, batch []hunt.Event) {
	var c []hunt.Seq
	for _, ev := range batch {
		c = append(c, ev.Epoch.Seq)
	}
	s.calls = append(s.calls, c)
}

func evs(seqs ...hunt.Seq) []hunt.Event {
	out := make([]hunt.Event, len(seqs))
	for i, s := range seqs {
		out[i] = hunt.Event{Epoch: hunt.Epoch{Partition: 0, Seq: s}}
	}
	return out
}

// TestFeedOrder: answers and the tailer both feed the sinks; every event
// reaches them once, in seq order, an answer as soon as it is the next one
// and one further ahead only when the gap before it is filled.
func TestFeedOrder(t *testing.T) {
	sink := &seqSink{}
	e := &Engine{log: slog.New(slog.DiscardHandler), parts: make([]partState, 1), sinks: []engine.Sink{sink}}
	e.parts[0].ch = make(chan struct{})
	steps := []struct {
		name    string
		in      []hunt.Event
		fromLog hunt.Seq
		want    []hunt.Seq // fed by this step; nil: nothing
		mark    hunt.Seq   // watermark after it
	}{
		{"answer 2 waits for 1", evs(2), 0, nil, 0},
		{"answer 1 feeds 1 and 2", evs(1), 0, []hunt.Seq{1, 2}, 2},
		{"answer 4 waits for 3", evs(4), 0, nil, 2},
		{"tailer 1-3 feeds 3, then 4 from early", evs(1, 2, 3), 3, []hunt.Seq{3, 4}, 4},
		{"a replayed old answer is not fed again", evs(2), 0, nil, 4},
		{"tailer 4-5 feeds only 5", evs(4, 5), 5, []hunt.Seq{5}, 5},
		{"tailer past an unreadable 6 moves the watermark", nil, 6, nil, 6},
		{"answer 7", evs(7), 0, []hunt.Seq{7}, 7},
	}
	for _, st := range steps {
		before := len(sink.calls)
		e.feed(0, st.in, st.fromLog)
		var got []hunt.Seq
		if len(sink.calls) > before {
			got = sink.calls[len(sink.calls)-1]
		}
		if len(sink.calls) > before+1 || !slices.Equal(got, st.want) {
			t.Fatalf("%s: sinks got %v (calls %v); want %v", st.name, got, sink.calls[before:], st.want)
		}
		if seq, _, _ := e.parts[0].get(); seq != st.mark {
			t.Fatalf("%s: watermark %d; want %d", st.name, seq, st.mark)
		}
	}
}
