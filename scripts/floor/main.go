// Command floor is a measuring stick for `scripts/bench.sh floor`, not part
// of Cairn: the least a durable claim can cost on this machine with Cairn's
// stack (net/http, an HS256 bearer token checked by golang-jwt, a JSON body,
// a synced Pebble write), with none of Cairn's own work (no partitions, no
// decision, no idempotency, no leaderboard, no sinks).
//
// It answers GET /healthz like Cairn, and POST
// /v1/hunts/{hunt}/hotspots/{id}/claim (the request scripts/ceiling.lua
// sends) with as much of a claim's work as asked:
//
//   - neither flag: read the body, answer a fixed 201 of the size of
//     Cairn's: net/http's own work for a request of a claim's shape;
//   - --auth: also check the bearer token (cached per token string, as
//     Cairn caches a player's token), require an Idempotency-Key, decode
//     the JSON body and render the answer;
//   - --store pebble: also write --keys keys in one synced Pebble batch per
//     request (Pebble groups concurrent commits into one WAL sync; the same
//     options as Cairn's store: 64 MiB memtables);
//   - --store wal: instead, append the record to a preallocated plain file
//     that one goroutine writes and fdatasyncs for every request waiting
//     (a simple group-committed log, no index).
//
// Its claims per second and CPU per claim, at each depth, bound what a
// server doing that much of a claim's work reaches on the machine. (Its
// ratio of claims to its own /healthz bounds nothing: its /healthz is
// cheaper than Cairn's.)
package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sys/unix"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (127.0.0.1 only)")
	dir := flag.String("dir", "", "data directory (with --store pebble or wal)")
	store := flag.String("store", "none", "none, pebble or wal")
	auth := flag.Bool("auth", false, "check the token and decode the body")
	keys := flag.Int("keys", 1, "keys written per claim with --store pebble (Cairn writes 3 for a granted claim)")
	flag.Parse()
	secret := os.Getenv("CAIRN_SECRET")
	if secret == "" || !strings.HasPrefix(*addr, "127.0.0.1:") || *keys < 1 || *keys > 8 ||
		(*store != "none" && *store != "pebble" && *store != "wal") || (*store != "none" && *dir == "") {
		log.Fatal("floor: need CAIRN_SECRET, --addr 127.0.0.1:PORT, --store none|pebble|wal (pebble, wal: --dir), --keys 1..8")
	}
	f := &floor{secret: []byte(secret), keys: *keys, auth: *auth,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())}
	if *store == "pebble" {
		db, err := pebble.Open(*dir, &pebble.Options{MemTableSize: 64 << 20, FormatMajorVersion: pebble.FormatNewest})
		if err != nil {
			log.Fatal(err)
		}
		f.db = db
	}
	if *store == "wal" {
		if err := os.MkdirAll(*dir, 0o750); err != nil {
			log.Fatal(err)
		}
		file, err := os.OpenFile(filepath.Join(*dir, "wal"), os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			log.Fatal(err)
		}
		if f.wal, err = newWAL(file); err != nil {
			log.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /v1/hunts/{hunt}/hotspots/{id}/claim", f.claim)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

var answer = []byte(`{"outcome":"granted","hunt":"ceiling","hotspot":"c1234","player":"p01234","reward":1,"points":5,"balance":1234,"epoch":{"partition":0,"seq":1234}}` + "\n")

type floor struct {
	secret []byte
	parser *jwt.Parser
	tokens sync.Map // token string -> player
	db     *pebble.DB
	wal    *wal
	keys   int
	auth   bool
	seq    atomic.Uint64
}

func (f *floor) player(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", false
	}
	if p, ok := f.tokens.Load(tok); ok {
		return p.(string), true
	}
	var c jwt.RegisteredClaims
	if _, err := f.parser.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return f.secret, nil }); err != nil || c.Subject == "" {
		return "", false
	}
	f.tokens.Store(tok, c.Subject)
	return c.Subject, true
}

func (f *floor) claim(w http.ResponseWriter, r *http.Request) {
	player, key := "p01234", "k"
	var body struct{ Lat, Lon float64 }
	if f.auth {
		var ok bool
		player, ok = f.player(r)
		key = r.Header.Get("Idempotency-Key")
		if !ok || key == "" {
			http.Error(w, `{"code":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
			http.Error(w, `{"code":"bad_request"}`, http.StatusBadRequest)
			return
		}
	} else if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4096)); err != nil {
		http.Error(w, `{"code":"bad_request"}`, http.StatusBadRequest)
		return
	}
	seq := f.seq.Add(1)
	if f.wal != nil {
		rec := fmt.Appendf(nil, `{"hunt":%q,"hotspot":%q,"player":%q,"key":%q,"lat":%g,"lon":%g,"seq":%d}`+"\n",
			r.PathValue("hunt"), r.PathValue("id"), player, key, body.Lat, body.Lon, seq)
		if err := f.wal.append(rec); err != nil {
			http.Error(w, `{"code":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
	}
	if f.db != nil {
		// One record of about an event's size, then keys spread like
		// Cairn's idempotency and ledger keys (random, not appended).
		val := fmt.Appendf(nil, `{"hunt":%q,"hotspot":%q,"player":%q,"key":%q,"lat":%g,"lon":%g,"seq":%d}`,
			r.PathValue("hunt"), r.PathValue("id"), player, key, body.Lat, body.Lon, seq)
		b := f.db.NewBatch()
		k := binary.BigEndian.AppendUint64([]byte("e/"), seq)
		b.Set(k, val, nil)
		for i := 1; i < f.keys; i++ {
			rk := make([]byte, 2+16)
			copy(rk, fmt.Sprintf("%c/", 'i'+i))
			rand.Read(rk[2:])
			b.Set(rk, k, nil)
		}
		err := b.Commit(pebble.Sync)
		b.Close()
		if err != nil {
			http.Error(w, `{"code":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	if !f.auth {
		w.Write(answer)
		return
	}
	fmt.Fprintf(w, `{"outcome":"granted","hunt":%q,"hotspot":%q,"player":%q,"reward":1,"points":5,"balance":%d,"epoch":{"partition":0,"seq":%d}}`+"\n",
		r.PathValue("hunt"), r.PathValue("id"), player, seq, seq)
}

// wal is a group-committed log in one preallocated file: append adds a
// record to the next write and waits until a write and fdatasync holding it
// have ended. Each write has its own done channel, so a sync wakes only the
// requests it made durable. The first failed write fails every later one.
type wal struct {
	mu      sync.Mutex
	buf     []byte
	done    chan struct{} // closed when the write buf goes into is durable (or failed)
	err     error
	flusher chan struct{}
}

// walPrealloc is the file's preallocated size: writes within it do not
// change the file's size, so fdatasync has no metadata to write.
const walPrealloc = 1 << 30

func newWAL(file *os.File) (*wal, error) {
	if err := unix.Fallocate(int(file.Fd()), 0, 0, walPrealloc); err != nil {
		return nil, err
	}
	w := &wal{done: make(chan struct{}), flusher: make(chan struct{}, 1)}
	go w.run(file)
	return w, nil
}

func (w *wal) append(rec []byte) error {
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return w.err
	}
	w.buf = append(w.buf, rec...)
	done := w.done
	w.mu.Unlock()
	select {
	case w.flusher <- struct{}{}:
	default:
	}
	<-done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *wal) run(file *os.File) {
	var out []byte
	var off int64
	for range w.flusher {
		w.mu.Lock()
		if len(w.buf) == 0 || w.err != nil {
			w.mu.Unlock()
			continue
		}
		out, w.buf = w.buf, out[:0]
		done := w.done
		w.done = make(chan struct{})
		w.mu.Unlock()
		_, err := file.WriteAt(out, off)
		off += int64(len(out))
		if err == nil {
			err = unix.Fdatasync(int(file.Fd()))
		}
		if err != nil {
			// Fail the records appended since too: nothing after a failed
			// write is written.
			w.mu.Lock()
			w.err = err
			close(w.done)
			w.mu.Unlock()
		}
		close(done)
	}
}
