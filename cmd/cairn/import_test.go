package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/httpapi"
)

// importServer starts the binary once for the import tests and returns its
// base URL; the tests' env carries the admin token.
func importServer(t *testing.T) string {
	t.Helper()
	p := startServe(t, cairnBinary(t), t.TempDir(), freeAddr(t))
	t.Cleanup(p.kill)
	t.Setenv("CAIRN_ADMIN_TOKEN", testAdmin)
	t.Setenv("CAIRN_SECRET", testSecret)
	return p.base
}

// adminDo sends an admin request and returns its status and body.
func adminDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func createHunt(t *testing.T, base, id string) {
	t.Helper()
	if st, b := adminDo(t, "PUT", base+"/v1/admin/hunts/"+id, `{"name":"`+id+`"}`); st != 200 && st != 201 {
		t.Fatalf("PUT hunt %s = %d %s", id, st, b)
	}
}

// huntHotspots lists a hunt's hotspots through the public nearby query
// (every test hotspot lies within 1 km of 0,0) with a minted player token.
func huntHotspots(t *testing.T, base, id string) map[string]map[string]any {
	t.Helper()
	var tok bytes.Buffer
	if code := run(context.Background(), []string{"token", "--player", "importer"}, &tok, io.Discard); code != 0 {
		t.Fatalf("cairn token exit %d", code)
	}
	req, _ := http.NewRequest("GET", base+"/v1/hunts/"+id+"/hotspots?lat=0&lon=0&radius_m=1000&limit=100", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.String()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		var wrapped struct {
			Hotspots []map[string]any `json:"hotspots"`
		}
		if err := json.Unmarshal(b, &wrapped); err != nil {
			t.Fatalf("nearby of %s = %d %s: %v", id, resp.StatusCode, b, err)
		}
		list = wrapped.Hotspots
	}
	out := map[string]map[string]any{}
	for _, h := range list {
		out[h["id"].(string)] = h
	}
	return out
}

// runImportCmd runs `cairn import` in-process and returns its exit status,
// the summary (with --json) and stderr.
func runImportCmd(t *testing.T, args ...string) (int, importResult, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"import"}, args...), &out, &errb)
	var res importResult
	if code != 2 && strings.Contains(strings.Join(args, " "), "--json") {
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("cairn import %v: summary %q does not decode: %v (stderr %q)", args, out.String(), err, errb.String())
		}
	}
	return code, res, errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImport sends each format, in one request and in several, to a real
// server and reads the hotspots back.
func TestImport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary")
	}
	base := importServer(t)
	ndjson := `{"id":"n1","lat":0.001,"lon":0.001,"tickets":3,"reward":5,"points":7}

{"id":"n2","lat":0.002,"lon":0.002,"tickets":4}
`
	array := `[
  {"id": "a1", "lat": 0.001, "lon": 0.001,
   "tickets": 3, "reward": 5, "points": 7},
  {"id": "a2", "lat": 0.002, "lon": 0.002, "tickets": 4, "opens_at": "2020-01-01T00:00:00Z"}
]
`
	csvText := "points, tickets,id,lat,lon,reward,closes_at\r\n" +
		"7,3,\"c1\",0.001,0.001,5,\r\n" +
		",4,c2,0.002,0.002,,2100-01-01T00:00:00Z\r\n"
	for _, tc := range []struct{ name, file, content, prefix string }{
		{"ndjson", "h.ndjson", ndjson, "n"},
		{"json array", "h.json", array, "a"},
		{"csv", "h.csv", csvText, "c"},
		{"ndjson sniffed", "h.txt", ndjson, "n"},
		{"array sniffed", "h.data", array, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			huntID := strings.ReplaceAll(tc.name, " ", "-")
			createHunt(t, base, huntID)
			code, res, stderr := runImportCmd(t, "--target", base, "--hunt", huntID, "--json", writeFile(t, tc.file, tc.content))
			if code != 0 || !res.OK || res.Imported != 2 || res.Requests != 1 {
				t.Fatalf("cairn import %s = exit %d, %+v, stderr %q; want 0 and 2 imported in 1 request", tc.name, code, res, stderr)
			}
			got := huntHotspots(t, base, huntID)
			one, two := got[tc.prefix+"1"], got[tc.prefix+"2"]
			if len(got) != 2 || one == nil || two == nil {
				t.Fatalf("hotspots of %s = %v; want %s1 and %s2", huntID, got, tc.prefix, tc.prefix)
			}
			if one["tickets_left"] != 3.0 || one["reward"] != 5.0 || one["points"] != 7.0 || two["tickets_left"] != 4.0 {
				t.Errorf("hotspots of %s = %v; want %s1 3 tickets, reward 5, points 7, %s2 4 tickets", huntID, got, tc.prefix, tc.prefix)
			}
		})
	}

	t.Run("several requests", func(t *testing.T) {
		createHunt(t, base, "many")
		var b strings.Builder
		for i := range 9 {
			fmt.Fprintf(&b, `{"id":"m%d","lat":0.00%d,"lon":0,"tickets":1}`+"\n", i, i)
		}
		path := writeFile(t, "m.ndjson", b.String())
		for _, per := range []struct{ n, requests int }{{3, 3}, {4, 3}, {9, 1}, {100, 1}} {
			code, res, stderr := runImportCmd(t, "--target", base, "--hunt", "many", "--json", "--hotspots-per-request", fmt.Sprint(per.n), path)
			if code != 0 || res.Imported != 9 || res.Requests != per.requests || res.Bytes != int64(b.Len()) {
				t.Fatalf("import 9 by %d = exit %d, %+v, %q; want 9 imported in %d requests, %d bytes", per.n, code, res, stderr, per.requests, b.Len())
			}
		}
		if got := huntHotspots(t, base, "many"); len(got) != 9 {
			t.Errorf("hotspots of many = %d; want 9", len(got))
		}
	})

	t.Run("summary line", func(t *testing.T) {
		createHunt(t, base, "line")
		var out bytes.Buffer
		code := run(context.Background(), []string{"import", "--target", base, "--hunt", "line", writeFile(t, "l.ndjson", ndjson)}, &out, io.Discard)
		if want := "imported 2 hotspots into hunt line from "; code != 0 || !strings.HasPrefix(out.String(), want) || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("cairn import = exit %d, %q; want 0 and one line starting %q", code, out.String(), want)
		}
	})
}

// TestImportErrors: every failure is a clear message and an exit status,
// and what was imported before a bad item is said and kept.
func TestImportErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary")
	}
	base := importServer(t)
	createHunt(t, base, "e")
	good := `{"id":"g1","lat":0.001,"lon":0,"tickets":1}` + "\n"
	tests := []struct {
		name     string
		args     []string
		content  string
		code     int
		imported int64
		want     []string
	}{
		{"bad csv cell", nil, "id,lat,lon,tickets\ng1,0.001,0,1\ng2,0.002,x,1\n", 1, 1,
			[]string{"bad file: line 3: lon \"x\" is not a number", "the 1 hotspots before it were imported"}},
		{"csv missing column", nil, "id,lat,tickets\ng1,0,1\n", 1, 0, []string{`the header has no "lon" column`}},
		{"csv unknown column", nil, "id,lat,lon,tickets,colour\n", 1, 0, []string{`unknown column "colour"`}},
		{"bad ndjson line", []string{"--format", "ndjson"}, good + "{nope\n", 1, 1, []string{"line 2: not a JSON object"}},
		{"array element too long", nil, `[{"id":"g1","lat":0,"lon":0,"tickets":1,"x":"` + strings.Repeat("a", httpapi.ImportItemLenMax) + `"}]`, 1, 0,
			[]string{fmt.Sprintf("element 0 is longer than %d bytes", httpapi.ImportItemLenMax)}},
		{"ndjson line too long", []string{"--format", "ndjson"}, good + strings.Repeat(" ", httpapi.ImportItemLenMax+1) + "\n", 1, 1,
			[]string{fmt.Sprintf("line 2: longer than %d bytes", httpapi.ImportItemLenMax)}},
		{"empty file", []string{"--format", "ndjson"}, "\n\n", 1, 0, []string{"no hotspot in"}},
		{"server refuses an item", nil, good + `{"id":"g2","lat":100,"lon":0,"tickets":1}` + "\n", 1, 1,
			[]string{"the server refused the import: 400", "lat/lon", "1 hotspots imported before it"}},
		{"unknown hunt", []string{"--hunt", "nope"}, good, 1, 0, []string{"404", "unknown hunt", "create the hunt first"}},
		{"wrong admin token", []string{"--admin-token", "not-the-admin-token"}, good, 1, 0, []string{"401", "admin token", "nothing imported"}},
		{"unreachable", []string{"--target", "http://" + freeAddr(t)}, good, importExitUnreachable, 0, []string{"cannot reach"}},
		{"usage", []string{"--hotspots-per-request", "0"}, good, 2, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--target", base, "--hunt", "e", "--json"}, tc.args...)
			code, res, stderr := runImportCmd(t, append(args, writeFile(t, "f.txt", tc.content))...)
			if code != tc.code {
				t.Fatalf("cairn import (%s) exit = %d (stderr %q); want %d", tc.name, code, stderr, tc.code)
			}
			if code == 2 {
				return
			}
			if res.OK || res.Imported != tc.imported {
				t.Errorf("cairn import (%s) = %+v; want not OK, %d imported", tc.name, res, tc.imported)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.Error, w) || !strings.Contains(stderr, w) {
					t.Errorf("cairn import (%s) error = %q, stderr %q; want both to contain %q", tc.name, res.Error, stderr, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, _, stderr := runImportCmd(t, "--target", base, "--hunt", "e", filepath.Join(t.TempDir(), "none.ndjson"))
		if code != 1 || !strings.Contains(stderr, "no such file") {
			t.Errorf("cairn import of a missing file = exit %d, %q; want 1 naming it", code, stderr)
		}
	})
}

// TestArrayReader splits arrays whose strings hold brackets, braces, escaped
// quotes and newlines, and refuses what is not an array of objects.
func TestArrayReader(t *testing.T) {
	items := func(in string) ([]string, error) {
		r, _, err := newItemReader(formatJSON, "x", bufio.NewReaderSize(strings.NewReader(in), importBufLen))
		if err != nil {
			return nil, err
		}
		var out []string
		for {
			item, _, err := r.next()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, string(item))
		}
	}
	got, err := items(" [ {\"a\": \"}]{[\\\"\", \"b\": [1, {\"c\": 2}]},\n\n{\"d\":\n \"e\\n\"} ] \n")
	want := []string{`{"a":"}]{[\"","b":[1,{"c":2}]}`, `{"d":"e\n"}`}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("items = %q, %v; want %q", got, err, want)
	}
	if got, err := items("[]"); err != nil || len(got) != 0 {
		t.Errorf("items([]) = %q, %v; want none", got, err)
	}
	for in, want := range map[string]string{
		`{"a":1}`:           "must start with '['",
		`[{"a":1} {"b":2}]`: "want ',' or ']' after element 1",
		`[1, 2]`:            "element 0 is not a JSON object",
		`[{"a":1}] x`:       "data after the closing bracket",
		`[{"a":1}`:          "ends early",
		`[{"a":}]`:          "element 0: invalid character",
	} {
		if _, err := items(in); err == nil || !errors.Is(err, errBadFile) || !strings.Contains(err.Error(), want) {
			t.Errorf("items(%q) error = %v; want a bad-file error containing %q", in, err, want)
		}
	}
}

func TestImportProgressLine(t *testing.T) {
	im := &importer{size: 4 << 20, file: &countingReader{}}
	im.sent.Store(20_000)
	im.confirmed.Store(5_000)
	im.file.n.Store(1 << 20)
	got := im.progressLine("h.ndjson", 2*time.Second)
	want := "importing h.ndjson: 20000 hotspots sent (5000 confirmed), 10000/s, 1.0 MiB of 4.0 MiB (25.0 %), ETA 6s"
	if got != want {
		t.Errorf("progressLine = %q; want %q", got, want)
	}
	im.size = -1 // standard input: no percentage, no ETA
	if got, want := im.progressLine("-", 2*time.Second), "importing -: 20000 hotspots sent (5000 confirmed), 10000/s, 1.0 MiB"; got != want {
		t.Errorf("progressLine(stdin) = %q; want %q", got, want)
	}
}
