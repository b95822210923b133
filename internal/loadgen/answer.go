package loadgen

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// answer holds the fields of a Cairn response body the generator looks at.
type answer struct {
	Outcome          string
	Code             string
	Type             string
	ConsistencyToken string
	StalenessMS      float64 // valid if HasStaleness
	HasStaleness     bool
}

// scanAnswer fills a from the top-level members of a JSON object body:
// outcome, code and type (interned: a run sees a handful of distinct
// values), consistency_token (only if wantToken: it is unique per claim,
// so it costs an allocation) and staleness_ms. Every other member is
// skipped without being decoded. Names match exactly (Cairn writes them in
// lower case); when a name repeats, the last member wins, and one whose
// value has the wrong type clears the field. A body that is not a JSON
// object leaves a as far as it got: a status with an unreadable body is
// still a status. It never panics, and nesting costs no stack.
func scanAnswer(body []byte, a *answer, wantToken bool) {
	eachMember(body, func(key, val []byte) {
		switch string(key) {
		case "outcome":
			a.Outcome = stringMember(val, true)
		case "code":
			a.Code = stringMember(val, true)
		case "type":
			a.Type = stringMember(val, true)
		case "consistency_token":
			if wantToken {
				a.ConsistencyToken = stringMember(val, false)
			}
		case "staleness_ms":
			f, err := strconv.ParseFloat(string(val), 64)
			a.StalenessMS, a.HasStaleness = f, err == nil
		}
	})
}

// eventAt is the decision time ("at", RFC 3339) of a live-feed event's data.
func eventAt(data []byte) (at time.Time, ok bool) {
	eachMember(data, func(key, val []byte) {
		if string(key) != "at" {
			return
		}
		v, isStr := (&jsonScan{b: val}).strValue()
		if !isStr {
			at, ok = time.Time{}, false
			return
		}
		t, err := time.Parse(time.RFC3339Nano, string(v))
		at, ok = t, err == nil
	})
	return at, ok
}

// eachMember calls fn with the name (escapes decoded) and the raw value of
// every top-level member of a JSON object, in order, until the end of the
// object or the first thing that is not a member.
func eachMember(body []byte, fn func(key, val []byte)) {
	s := jsonScan{b: body}
	s.space()
	if !s.byte('{') {
		return
	}
	s.space()
	if s.byte('}') {
		return
	}
	for {
		s.space()
		key, ok := s.strValue()
		if !ok {
			return
		}
		s.space()
		if !s.byte(':') {
			return
		}
		s.space()
		start := s.i
		if !s.skip() {
			return
		}
		fn(key, s.b[start:s.i])
		s.space()
		if !s.byte(',') {
			return // '}' or garbage: either way, done
		}
	}
}

// stringMember is the string a JSON value holds, or "" if it holds none.
func stringMember(val []byte, interned bool) string {
	v, ok := (&jsonScan{b: val}).strValue()
	switch {
	case !ok:
		return ""
	case interned:
		return intern(v)
	}
	return string(v)
}

// jsonScan is a cursor over a JSON text that checks only as much as it
// needs to find the top-level members: it is not a validator.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScan) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str moves past a string and returns its raw bytes between the quotes
// (escapes not decoded), or false if there is no complete string here.
func (s *jsonScan) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i++
			return s.b[start : s.i-1], true
		case '\\':
			s.i += 2
		default:
			s.i++
		}
	}
	s.i = len(s.b)
	return nil, false
}

// strValue reads a string and decodes its escapes (rare in Cairn's
// answers: those go through encoding/json). It returns false, with the
// cursor unmoved, if there is no valid string here.
func (s *jsonScan) strValue() ([]byte, bool) {
	start := s.i
	raw, ok := s.str()
	if !ok {
		s.i = start
		return nil, false
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		var v string
		if json.Unmarshal(s.b[start:s.i], &v) != nil {
			s.i = start
			return nil, false
		}
		return []byte(v), true
	}
	return raw, true
}

// skip moves past one value of any kind. An object or array is skipped by
// counting brackets outside strings, without recursion.
func (s *jsonScan) skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; c {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	case '}', ']', ',', ':':
		return false
	default: // number, true, false, null
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return s.i > start
	}
}

// intern returns b as a string, shared with every earlier equal value so a
// run's few outcomes and problem types cost no allocation per answer. The
// table is copied on insert and read without a lock; past internMax
// distinct values it stops growing and allocates.
func intern(b []byte) string {
	if m := internTab.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	internMu.Lock()
	defer internMu.Unlock()
	old := internTab.Load()
	if old != nil {
		if s, ok := (*old)[string(b)]; ok {
			return s
		}
		if len(*old) >= internMax {
			return string(b)
		}
	}
	next := make(map[string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	s := string(b)
	next[s] = s
	internTab.Store(&next)
	return s
}

func lenOf(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

const internMax = 256

var (
	internTab atomic.Pointer[map[string]string]
	internMu  sync.Mutex
)
