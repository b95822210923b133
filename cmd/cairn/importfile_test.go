package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/cairnhq/cairn/internal/httpapi"
)

// FuzzImportFile feeds any bytes to each format's reader: it never panics
// or loops, and every item it yields is one line holding one JSON object
// no longer than the server takes, which is what `cairn import` sends.
func FuzzImportFile(f *testing.F) {
	f.Add([]byte(`{"id":"a","lat":1,"lon":2,"tickets":3}` + "\n\n" + `{"id":"b","lat":1,"lon":2,"tickets":3}`))
	f.Add([]byte(`[ {"id": "a", "x": "}]{\"", "lat": 1}, {"id": "b"} ]`))
	f.Add([]byte("id,lat,lon,tickets,reward,opens_at\r\n\"a\",1.5,-2,3,,2020-01-01T00:00:00Z\nb,NaN,1e400,x,1,\"q\"\"\"\n"))
	f.Add([]byte("lat,lon,tickets,id\n1,2,3,\"a\nb\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{formatAuto, formatNDJSON, formatJSON, formatCSV} {
			r, _, err := newItemReader(format, "fuzz", bufio.NewReaderSize(bytes.NewReader(data), importBufLen))
			if err != nil {
				continue
			}
			for n := 0; ; n++ {
				if n > len(data)+1 {
					t.Fatalf("%s: %d items from %d bytes; want the reader to end", format, n, len(data))
				}
				item, _, err := r.next()
				if err != nil {
					if err != io.EOF && !isBadFile(err) {
						t.Fatalf("%s: error %v is neither io.EOF nor a bad-file error", format, err)
					}
					break
				}
				if len(item) == 0 || item[0] != '{' || !json.Valid(item) || bytes.ContainsAny(item, "\r\n") {
					t.Fatalf("%s: item %q is not one line of one JSON object", format, item)
				}
				if len(item) > httpapi.ImportItemLenMax {
					t.Fatalf("%s: item of %d bytes > %d", format, len(item), httpapi.ImportItemLenMax)
				}
				var obj map[string]any
				if err := json.Unmarshal(item, &obj); err != nil {
					t.Fatalf("%s: item %q is not an object: %v", format, item, err)
				}
			}
		}
	})
}

func isBadFile(err error) bool { return errors.Is(err, errBadFile) }
