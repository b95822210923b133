package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// streamSpots writes n generated hotspots to a pipe as NDJSON or as one JSON
// array, from a goroutine, so the request body is never whole in memory.
// bad, if >= 0, is the index of an item written with negative tickets.
func streamSpots(n, bad int, array bool) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		if array {
			bw.WriteString("[\n")
		}
		for i := 0; i < n; i++ {
			if array && i > 0 {
				bw.WriteString(",\n")
			}
			tickets := 3
			if i == bad {
				tickets = -1
			}
			// Spread over ~0.3 x 0.3 degrees around Paris: many cells and partitions.
			fmt.Fprintf(bw, `{"id":"hs-%d","lat":%.6f,"lon":%.6f,"tickets":%d,"reward":1,"points":1}`,
				i, parisLat+float64(i%547)*0.0005, parisLon+float64(i/547)*0.0017, tickets)
			if !array {
				bw.WriteByte('\n')
			}
		}
		if array {
			bw.WriteString("\n]\n")
		}
		pw.CloseWithError(bw.Flush())
	}()
	return pr
}

func (e *testEnv) countSpots(id hunt.HuntID) int {
	e.t.Helper()
	n := 0
	if err := e.eng.Hotspots(context.Background(), id, func(hunt.HotspotView) error { n++; return nil }); err != nil {
		e.t.Fatalf("Hotspots(%s): %v", id, err)
	}
	return n
}

// TestImportStreaming100k imports 100,000 hotspots as NDJSON in one request
// whose body is generated while it is sent.
func TestImportStreaming100k(t *testing.T) {
	e := newEnv(t, envOption{})
	e.putHunt("big", `{"name":"Big"}`)
	const n = 100_000
	r := e.do(req{method: "POST", path: "/v1/admin/hunts/big/hotspots", auth: testAdmin,
		header: map[string]string{"Content-Type": "application/x-ndjson"}, rawBody: streamSpots(n, -1, false)})
	mustStatus(t, "import 100k", r, http.StatusOK)
	if m := decodeJSON(t, r); m["imported"] != json.Number("100000") {
		t.Fatalf("import 100k = %s; want imported 100000", r.body)
	}
	if got := e.countSpots("big"); got != n {
		t.Fatalf("hotspots after import = %d; want %d", got, n)
	}
}

// TestImportArrayAndBadItem imports a JSON array across chunk boundaries,
// then one with a bad item past the first chunk: everything before it is
// imported, nothing from it on, and the answer says so.
func TestImportArrayAndBadItem(t *testing.T) {
	e := newEnv(t, envOption{})
	e.putHunt("arr", `{"name":"Array"}`)
	n := engine.ImportBatchMax*2 + 10
	r := e.do(req{method: "POST", path: "/v1/admin/hunts/arr/hotspots", auth: testAdmin, rawBody: streamSpots(n, -1, true)})
	mustStatus(t, "array import", r, http.StatusOK)
	if got := e.countSpots("arr"); got != n {
		t.Fatalf("hotspots after the array import = %d; want %d", got, n)
	}

	e.putHunt("bad", `{"name":"Bad"}`)
	badAt := engine.ImportBatchMax + 100
	r = e.do(req{method: "POST", path: "/v1/admin/hunts/bad/hotspots", auth: testAdmin,
		header: map[string]string{"Content-Type": "application/x-ndjson"}, rawBody: streamSpots(n, badAt, false)})
	m := checkProblem(t, "import with a bad item", r, http.StatusBadRequest, "invalid_request")
	if m["imported"] != json.Number(fmt.Sprint(badAt)) || !strings.Contains(m["detail"].(string), fmt.Sprintf("item %d", badAt)) {
		t.Fatalf("bad import = %s; want imported %d and the item's index in the detail", r.body, badAt)
	}
	if got := e.countSpots("bad"); got != badAt {
		t.Fatalf("hotspots after the bad import = %d; want the %d before the bad item", got, badAt)
	}
}

// TestImportNeverLowersTickets: a re-import cannot take tickets below what
// is granted (I1), and upserts change rewards for later claims.
func TestImportNeverLowersTickets(t *testing.T) {
	e := newEnv(t, envOption{})
	s := numSpot(0, 2)
	e.basicHunt(s)
	for _, p := range []string{"a", "b"} {
		mustStatus(t, "claim "+p, e.claim(e.token(p), "h1", s.id, e.key(), s.lat, s.lon), http.StatusCreated)
	}
	lower := s
	lower.tickets = 1
	e.importSpots("h1", lower)
	tok := e.token("c")
	if got := e.ticketsLeft(tok, s); got != 0 {
		t.Fatalf("tickets_left after lowering to 1 with 2 granted = %d; want 0", got)
	}
	checkProblem(t, "claim after lowering", e.claim(tok, "h1", s.id, e.key(), s.lat, s.lon), 409, "sold_out")
	more := s
	more.tickets, more.reward = 3, 99
	e.importSpots("h1", more)
	r := e.claim(tok, "h1", s.id, e.key(), s.lat, s.lon)
	mustStatus(t, "claim after raising", r, http.StatusCreated)
	if m := decodeJSON(t, r); m["reward"] != json.Number("99") || m["tickets_left"] != json.Number("0") {
		t.Fatalf("claim after the upsert = %s; want reward 99, tickets_left 0", r.body)
	}
}

// TestImportStreamUnit drives importStream alone: formats, chunking, counts
// and what a failing put leaves behind.
func TestImportStreamUnit(t *testing.T) {
	item := func(i int) string { return fmt.Sprintf(`{"id":"x%d","lat":1,"lon":2,"tickets":1}`, i) }
	var puts []int
	put := func(hs []hunt.Hotspot) error {
		for _, h := range hs {
			if h.Geohash == "" {
				return errors.New("not normalized")
			}
		}
		puts = append(puts, len(hs))
		return nil
	}
	cases := []struct {
		name, ct, body string
		n              int
		err            bool
	}{
		{"ndjson sniffed", "", item(0) + "\n\n" + item(1) + "\r\n" + item(2), 3, false},
		{"ndjson by type", "application/x-ndjson; charset=utf-8", item(0) + "\n", 1, false},
		{"array", "application/json", " [" + item(0) + "," + item(1) + "] \n", 2, false},
		{"empty array", "", "[]", 0, false},
		{"array under ndjson type", "application/x-ndjson", "[" + item(0) + "]", 0, true},
		{"second line bad", "", item(0) + "\n{\"id\":\"y\"}\n" + item(2), 1, true},
		{"line too long", "", item(0) + "\n" + `{"id":"` + strings.Repeat("a", ImportItemLenMax) + `"}`, 1, true},
		{"element too long", "", "[" + item(0) + `,{"id":"` + strings.Repeat("a", ImportItemLenMax) + `"}]`, 1, true},
		{"element at the cap", "", "[" + item(0) + `,{"id":"x","lat":1,"lon":2,"tickets":1,"reward":0` + strings.Repeat(" ", ImportItemLenMax-len(`{"id":"x","lat":1,"lon":2,"tickets":1,"reward":0}`)) + "}]", 2, false},
		{"strings hide braces", "", `[{"id":"a}]\"{","lat":1,"lon":2,"tickets":1}]`, 0, true},
		{"escaped quote, then a brace", "", "[" + item(0) + `, {"id":"b\"}","lat":1,"lon":2,"tickets":1} ]`, 1, true},
		{"trailing comma", "", "[" + item(0) + ",]", 1, true},
		{"missing comma", "", "[" + item(0) + item(1) + "]", 1, true},
		{"array ends early", "", "[" + item(0) + ",", 1, true},
		{"element ends early", "", "[" + item(0) + `,{"id":"x"`, 1, true},
		{"data after the array", "", "[" + item(0) + "] x", 1, true},
		{"array of numbers", "", "[1,2]", 0, true},
		{"nested junk", "", `[{"id":"x","lat":1,"lon":2,"tickets":1,"extra":{"a":[1,2]}}]`, 0, true},
	}
	for _, c := range cases {
		puts = nil
		n, err := importStream(c.ct, strings.NewReader(c.body), put)
		if n != c.n || (err != nil) != c.err {
			t.Errorf("importStream(%s) = %d, %v; want %d, error %v", c.name, n, err, c.n, c.err)
		}
		sum := 0
		for _, p := range puts {
			sum += p
		}
		if sum != n {
			t.Errorf("importStream(%s): put %v items, answered %d", c.name, puts, n)
		}
	}
	// A failing put: the count is what put accepted before.
	calls := 0
	failing := func(hs []hunt.Hotspot) error {
		calls++
		if calls == 2 {
			return engine.ErrUnavailable
		}
		return nil
	}
	var b strings.Builder
	for i := 0; i < engine.ImportBatchMax*3; i++ {
		b.WriteString(item(i) + "\n")
	}
	n, err := importStream("", strings.NewReader(b.String()), failing)
	if n != engine.ImportBatchMax || !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("importStream with a failing put = %d, %v; want %d, ErrUnavailable", n, err, engine.ImportBatchMax)
	}
}

// FuzzImport: the import decoder never panics, hands put only normalized
// hotspots in chunks of at most engine.ImportBatchMax, and counts exactly.
func FuzzImport(f *testing.F) {
	item := `{"id":"a","lat":1,"lon":2,"tickets":1}`
	for _, s := range []string{item + "\n" + item, "[" + item + "," + item + "]", "[]", "[" + item, `{"id":"a"}`, "\n\n", "[1]",
		`[{"id":"a","lat":1,"lon":2,"tickets":1,"opens_at":"2030-01-01T00:00:00Z","closes_at":"2029-01-01T00:00:00Z"}]`} {
		f.Add("", []byte(s))
		f.Add("application/x-ndjson", []byte(s))
	}
	f.Fuzz(func(t *testing.T, ct string, b []byte) {
		total := 0
		n, err := importStream(ct, bytes.NewReader(b), func(hs []hunt.Hotspot) error {
			if len(hs) == 0 || len(hs) > engine.ImportBatchMax {
				t.Fatalf("put got %d hotspots", len(hs))
			}
			for _, h := range hs {
				if h.Geohash == "" || !geo.ValidCoord(h.Lat, h.Lon) || !hunt.ValidID(string(h.ID)) || h.Tickets < 0 {
					t.Fatalf("put got an unnormalized hotspot %+v", h)
				}
			}
			total += len(hs)
			return nil
		})
		if n != total {
			t.Fatalf("importStream = %d; put got %d", n, total)
		}
		if err != nil {
			if _, ok := classify(err); !ok {
				t.Fatalf("importStream(%q) error %v is not in the problem table", b, err)
			}
		}
	})
}

// TestImportItemCap: an array element longer than ImportItemLenMax is
// refused like an NDJSON line of that length (413 item_too_large, naming
// the item and what was imported before it), after reading no more than the
// cap of it: a 32 MiB element costs the server no 32 MiB of memory.
func TestImportItemCap(t *testing.T) {
	e := newEnv(t, envOption{})
	const hugeLen = 32 << 20
	good := engine.ImportBatchMax + 5
	for _, array := range []bool{true, false} {
		id := fmt.Sprintf("cap-%v", array)
		e.putHunt(id, `{"name":"Cap"}`)
		// good items, then one whose id never ends, streamed: the body is
		// never whole in memory on either side.
		var head strings.Builder
		if array {
			head.WriteString("[")
		}
		for i := 0; i < good; i++ {
			fmt.Fprintf(&head, `{"id":"hs-%d","lat":48.85,"lon":2.35,"tickets":1}`, i)
			if array {
				head.WriteString(",")
			} else {
				head.WriteString("\n")
			}
		}
		head.WriteString(`{"id":"`)
		tail := `","lat":48.85,"lon":2.35,"tickets":1}`
		if array {
			tail += `,{"id":"after","lat":48.85,"lon":2.35,"tickets":1}]`
		} else {
			tail += "\n" + `{"id":"after","lat":48.85,"lon":2.35,"tickets":1}` + "\n"
		}
		body := io.MultiReader(strings.NewReader(head.String()), io.LimitReader(repeatByte('a'), hugeLen), strings.NewReader(tail))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := e.do(req{method: "POST", path: "/v1/admin/hunts/" + id + "/hotspots", auth: testAdmin, rawBody: body})
		runtime.ReadMemStats(&after)
		m := checkProblem(t, fmt.Sprintf("import (array %v) with a %d-byte item", array, hugeLen), r, http.StatusRequestEntityTooLarge, "item_too_large")
		if m["imported"] != json.Number(fmt.Sprint(good)) || !strings.Contains(m["detail"].(string), fmt.Sprintf("item %d:", good)) ||
			!strings.Contains(m["detail"].(string), fmt.Sprint(ImportItemLenMax)) {
			t.Errorf("import (array %v) with a huge item = %s; want imported %d, the item's index and the cap in the detail", array, r.body, good)
		}
		if got := e.countSpots(hunt.HuntID(id)); got != good {
			t.Errorf("hotspots after the refused import (array %v) = %d; want the %d before the huge item", array, got, good)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("array %v: a %d MiB item refused after %d good ones; %.1f MiB allocated by the whole process meanwhile", array, hugeLen>>20, good, float64(alloc)/(1<<20))
		if alloc > hugeLen/2 {
			t.Errorf("importing (array %v) past a %d MiB item allocated %d MiB; want far less than the item (it is never held whole)", array, hugeLen>>20, alloc>>20)
		}
	}
}

// repeatByte is an endless reader of c.
type repeatByte byte

func (c repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}
