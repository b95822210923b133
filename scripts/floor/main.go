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
//   - --store wal: instead, append the record to a plain file that one
//     goroutine writes and fdatasyncs for every request waiting (group
//     commit, no index): the least durability can cost.
//
// The ratio of its claims to its /healthz, at each depth, bounds what any
// server doing that much of a claim's work reaches on the machine.
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
	dir := flag.String("dir", "", "Pebble directory (with --store pebble)")
	store := flag.String("store", "none", "none, pebble or wal")
	auth := flag.Bool("auth", false, "check the token and decode the body")
	keys := flag.Int("keys", 1, "keys written per claim with --store pebble (Cairn writes 2 or 3)")
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
		defer db.Close()
		f.db = db
	}
	if *store == "wal" {
		if err := os.MkdirAll(*dir, 0o750); err != nil {
			log.Fatal(err)
		}
		file, err := os.OpenFile(filepath.Join(*dir, "wal"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			log.Fatal(err)
		}
		f.wal = newWAL(file)
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

// wal is a group-committed append-only file: append adds a record to the
// next write and waits until a write and fdatasync holding it have ended.
type wal struct {
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	next    uint64 // the write the records appended now go into
	synced  uint64 // writes 1..synced are durable
	err     error
	flusher chan struct{}
}

func newWAL(file *os.File) *wal {
	w := &wal{next: 1, flusher: make(chan struct{}, 1)}
	w.cond = sync.NewCond(&w.mu)
	go w.run(file)
	return w
}

func (w *wal) append(rec []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, rec...)
	gen := w.next
	select {
	case w.flusher <- struct{}{}:
	default:
	}
	for w.synced < gen && w.err == nil {
		w.cond.Wait()
	}
	return w.err
}

func (w *wal) run(file *os.File) {
	var out []byte
	for range w.flusher {
		w.mu.Lock()
		if len(w.buf) == 0 {
			w.mu.Unlock()
			continue
		}
		out, w.buf = w.buf, out[:0]
		gen := w.next
		w.next++
		w.mu.Unlock()
		_, err := file.Write(out)
		if err == nil {
			err = unix.Fdatasync(int(file.Fd()))
		}
		w.mu.Lock()
		w.synced, w.err = gen, err
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}
