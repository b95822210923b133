package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"unicode/utf8"
)

// FuzzReadResponse feeds arbitrary bytes to the raw client's response
// parser: it must never panic, and what it accepts must be within bounds.
// The seed corpus is in testdata/fuzz/FuzzReadResponse.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"outcome\":\"granted\"}"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.0 204 No Content\r\nConnection: close\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, wire []byte, head bool) {
		br := bufio.NewReaderSize(bytes.NewReader(wire), rawReadBuf)
		a, buf, err := readResponse(br, head, nil)
		if err != nil {
			return
		}
		if a.status < 200 || a.status > 999 {
			t.Fatalf("accepted status %d", a.status)
		}
		if len(a.body) > bodyLenMax || len(a.body) > len(wire) {
			t.Fatalf("body of %d bytes from %d bytes of input", len(a.body), len(wire))
		}
		if len(a.body) > 0 && &a.body[0] != &buf[0] {
			t.Fatal("body does not alias the returned buffer")
		}
		// What was accepted parses the same way again, and stops at the
		// same byte: the next answer on a connection starts right after.
		rest := br.Buffered()
		br2 := bufio.NewReaderSize(bytes.NewReader(wire), rawReadBuf)
		a2, _, err2 := readResponse(br2, head, nil)
		if err2 != nil || a2.status != a.status || !bytes.Equal(a2.body, a.body) || a2.close != a.close || br2.Buffered() != rest {
			t.Fatalf("second parse differs: %v %d %q vs %d %q", err2, a2.status, a2.body, a.status, a.body)
		}
	})
}

// FuzzScanAnswer checks the body scanner against encoding/json: on a valid
// JSON object, each field it fills is the last member of that name, if
// that member is a string (a number for staleness_ms).
func FuzzScanAnswer(f *testing.F) {
	f.Add([]byte(`{"claim_id":"3.17","outcome":"granted","epoch":{"partition":3,"seq":17},"consistency_token":"3.17"}`))
	f.Add([]byte(`{"type":"https://cairn.dev/problems/sold_out","status":409,"outcome":"sold_out","code":"x"}`))
	f.Add([]byte(`{"entries":[{"rank":1,"player":"a\"}b","score":10}],"staleness_ms":2.5}`))
	f.Add([]byte(`{"out\u0063ome":"a","outcome":null,"code":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var a answer
		scanAnswer(body, &a, true)
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			return // valid JSON, but not an object
		}
		str := func(name string) string {
			var s string
			if raw, ok := m[name]; ok && json.Unmarshal(raw, &s) == nil && len(raw) > 0 && raw[0] == '"' {
				return s
			}
			return ""
		}
		for _, c := range []struct{ name, got string }{
			{"outcome", a.Outcome}, {"code", a.Code}, {"type", a.Type}, {"consistency_token", a.ConsistencyToken},
		} {
			if want := str(c.name); c.got != want {
				t.Fatalf("%s = %q; encoding/json reads %q from %s", c.name, c.got, want, body)
			}
		}
		f, err := strconv.ParseFloat(string(m["staleness_ms"]), 64)
		if a.HasStaleness != (err == nil) || a.HasStaleness && a.StalenessMS != f {
			t.Fatalf("staleness_ms = %v %v; want %v (%v) from %s", a.StalenessMS, a.HasStaleness, f, err, body)
		}
	})
}
