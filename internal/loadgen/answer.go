package loadgen

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
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
// skipped without being decoded. Keys match exactly (Cairn writes them in
// lower case). A body that is not a JSON object leaves a as far as it got;
// a status with an unreadable body is still a status. It never panics.
func scanAnswer(body []byte, a *answer, wantToken bool) {
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
		key, ok := s.str()
		if !ok {
			return
		}
		s.space()
		if !s.byte(':') {
			return
		}
		s.space()
		switch string(key) {
		case "outcome", "code", "type":
			v, ok := s.strValue()
			if !ok {
				if !s.skip(0) {
					return
				}
				break
			}
			str := intern(v)
			switch string(key) {
			case "outcome":
				a.Outcome = str
			case "code":
				a.Code = str
			default:
				a.Type = str
			}
		case "consistency_token":
			v, ok := s.strValue()
			if !ok {
				if !s.skip(0) {
					return
				}
				break
			}
			if wantToken {
				a.ConsistencyToken = string(v)
			}
		case "staleness_ms":
			start := s.i
			if !s.skip(0) {
				return
			}
			f, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
			a.StalenessMS, a.HasStaleness = f, err == nil
		default:
			if !s.skip(0) {
				return
			}
		}
		s.space()
		if s.byte(',') {
			continue
		}
		return // '}' or garbage: either way, done
	}
}

// jsonScan is a cursor over a JSON text that validates only as much as it
// needs to find the top-level members: it is not a validator.
type jsonScan struct {
	b []byte
	i int
}

// scanDepthMax bounds the nesting skip follows (deeper is refused).
const scanDepthMax = 64

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

// str reads a string and returns its raw bytes between the quotes (escapes
// not decoded), or false if there is no complete string here.
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

// strValue reads a string value and decodes its escapes (rare in Cairn's
// answers: those go through encoding/json). It returns false, with the
// cursor unmoved, if the value here is not a string.
func (s *jsonScan) strValue() ([]byte, bool) {
	start := s.i
	raw, ok := s.str()
	if !ok {
		s.i = start
		return nil, false
	}
	for _, c := range raw {
		if c == '\\' {
			var v string
			if json.Unmarshal(s.b[start:s.i], &v) != nil {
				return nil, false
			}
			return []byte(v), true
		}
	}
	return raw, true
}

// skip moves past one value of any kind.
func (s *jsonScan) skip(depth int) bool {
	if s.i >= len(s.b) || depth > scanDepthMax {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		end := byte('}')
		if s.b[s.i] == '[' {
			end = ']'
		}
		obj := end == '}'
		s.i++
		s.space()
		if s.byte(end) {
			return true
		}
		for {
			s.space()
			if obj {
				if _, ok := s.str(); !ok {
					return false
				}
				s.space()
				if !s.byte(':') {
					return false
				}
				s.space()
			}
			if !s.skip(depth + 1) {
				return false
			}
			s.space()
			if s.byte(',') {
				continue
			}
			return s.byte(end)
		}
	default: // number, true, false, null
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
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
