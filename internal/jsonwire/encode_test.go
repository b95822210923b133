package jsonwire

import (
	"encoding/json"
	"testing"
)

// decodesLikeJSON fails unless AppendString(s) is valid JSON that decodes to
// what encoding/json's own encoding of s decodes to.
func decodesLikeJSON(t *testing.T, s string) {
	t.Helper()
	mine := AppendString(nil, s)
	theirs, _ := json.Marshal(s)
	var a, b string
	if err := json.Unmarshal(mine, &a); err != nil {
		t.Fatalf("AppendString(%q) = %s: not JSON: %v", s, mine, err)
	}
	_ = json.Unmarshal(theirs, &b)
	if a != b {
		t.Fatalf("AppendString(%q) decodes to %q; encoding/json's to %q", s, a, b)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x01\x1f\n\r\t", "caf\u00e9 \u2615 \U0001F600",
		"bad\xffutf8\xc3", "\u2028line\u2029para", "</script>&"} {
		decodesLikeJSON(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("caf\u00e9\x00\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) { decodesLikeJSON(t, s) })
}
