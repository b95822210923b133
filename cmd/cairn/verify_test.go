package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/hunt"
)

// verifyUnderLoadRuns is how many `cairn verify` runs must pass while the
// log grows under `cairn load`.
const verifyUnderLoadRuns = 5

// verifyLoadedEventsMin is how many events this load must have added before
// a verify run counts: the load is past its setup and claiming.
const verifyLoadedEventsMin = 300

// verifyUnderLoadTimeout bounds the wait for those runs.
const verifyUnderLoadTimeout = 90 * time.Second

// TestVerifyUnderLoad runs `cairn verify --target` against a server while
// `cairn load` drives it: every run must pass (no false violation from
// writes landing while the audit reads), and the same under load on a store
// corrupted on purpose must fail.
func TestVerifyUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary and a load run")
	}
	bin := cairnBinary(t)
	data := t.TempDir()

	p := startServe(t, bin, data, freeAddr(t))
	verifyWhileLoading(t, bin, p.base, violation{})
	p.kill()

	// The negative control: one grant's Idempotency-Key rewritten to another
	// of the player's keys, which replay accepts and I3 forbids.
	detail := corruptIdemKey(t, filepath.Join(data, "store"))
	p = startServe(t, bin, data, freeAddr(t))
	defer p.kill()
	verifyWhileLoading(t, bin, p.base, violation{audit.I3, detail})
}

// TestVerifyUnderLoadRedis is TestVerifyUnderLoad on the Redis engine; its
// negative control raises one hotspot's granted count in Redis behind the
// server's back, which the state then shows and the log does not explain.
func TestVerifyUnderLoadRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary, Redis and a load run")
	}
	srv := redistest.Start(t)
	bin := cairnBinary(t)
	p := startServe(t, bin, t.TempDir(), freeAddr(t), "--store", srv.URL())
	defer p.kill()
	verifyWhileLoading(t, bin, p.base, violation{})

	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	// A hotspot with tickets left: on a sold-out one the extra grant would
	// not show (tickets_left stays 0), and the load can no longer sell it
	// out behind the corruption (Redis refuses at granted == tickets, so
	// the fold then says 1 where the state says 0).
	var key string
	var bestLeft int64
	iter := rdb.Scan(ctx, 0, "cairn:*:hs:*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := rdb.HMGet(ctx, iter.Val(), "t", "g").Result()
		if err != nil {
			t.Fatal(err)
		}
		tickets, _ := strconv.ParseInt(fmt.Sprint(v[0]), 10, 64)
		granted, _ := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
		if left := tickets - granted; left > bestLeft {
			key, bestLeft = iter.Val(), left
		}
	}
	if err := iter.Err(); err != nil || key == "" {
		t.Fatalf("SCAN for a hotspot with tickets left = %q, %v; want one", key, err)
	}
	if err := rdb.HIncrBy(ctx, key, "g", 1).Err(); err != nil {
		t.Fatal(err)
	}
	// cairn:{pN}:hs:<hunt>:<hotspot>
	parts := strings.SplitN(key, ":", 5)
	verifyWhileLoading(t, bin, p.base, violation{audit.I7, fmt.Sprintf("hotspot %s/%s tickets_left ", parts[3], parts[4])})
}

// TestVerifyUnderLoadCluster is TestVerifyUnderLoad on a 3+3 Redis Cluster
// (--store redis-cluster://...): the audit passes while claims split over
// two slots are being decided and credited.
func TestVerifyUnderLoadCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary, a Redis Cluster and a load run")
	}
	c := redistest.StartCluster(t, 3, 1500*time.Millisecond)
	bin := cairnBinary(t)
	p := startServe(t, bin, t.TempDir(), freeAddr(t), "--store", c.URL())
	defer p.kill()
	verifyWhileLoading(t, bin, p.base, violation{})
}

type violation struct {
	Invariant string `json:"invariant"`
	Detail    string `json:"detail"`
}

// verifyWhileLoading starts `cairn load` against base and runs `cairn
// verify --target base` until verifyUnderLoadRuns runs have seen the log
// grow since the run before. With a zero wantFail each run must pass;
// otherwise each must exit 1 with a violation of wantFail.Invariant whose
// detail starts with wantFail.Detail.
func verifyWhileLoading(t *testing.T, bin, base string, wantFail violation) {
	t.Helper()
	load := exec.Command(bin, "load", "--target", base, "--scenario", "hunt", "--rate", "400",
		"--duration", "120s", "--players", "500", "--subscribers", "0", "--json")
	load.Env = append(os.Environ(), "CAIRN_SECRET="+testSecret, "CAIRN_ADMIN_TOKEN="+testAdmin)
	var loadOut bytes.Buffer
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()
	defer func() {
		select {
		case <-loadDone:
		default:
			_ = load.Process.Kill()
			<-loadDone
		}
	}()

	deadline := time.Now().Add(verifyUnderLoadTimeout)
	live, last, first := 0, -1, -1
	for live < verifyUnderLoadRuns {
		select {
		case err := <-loadDone:
			loadDone <- err
			t.Fatalf("cairn load ended (%v) after %d verify runs under load; want %d; output:\n%s", err, live, verifyUnderLoadRuns, tail(loadOut.String(), 2000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d verify runs saw the log grow within %v; want %d", live, verifyUnderLoadTimeout, verifyUnderLoadRuns)
		}
		cmd := exec.Command(bin, "verify", "--target", base, "--json")
		cmd.Env = load.Env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var rep struct {
			OK         bool        `json:"ok"`
			Events     int         `json:"events"`
			Rounds     int         `json:"rounds"`
			Violations []violation `json:"violations"`
		}
		if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
			t.Fatalf("cairn verify = %v, output %q (stderr %q): %v", err, out.String(), errOut.String(), jerr)
		}
		if wantFail == (violation{}) && (err != nil || !rep.OK) {
			t.Fatalf("cairn verify under load = %v: %s %s; want it to pass", err, out.String(), errOut.String())
		}
		if wantFail != (violation{}) {
			named := slices.ContainsFunc(rep.Violations, func(v violation) bool {
				return v.Invariant == wantFail.Invariant && strings.HasPrefix(v.Detail, wantFail.Detail)
			})
			if err == nil || rep.OK || !named {
				t.Fatalf("cairn verify of a corrupted store under load = %v: %s; want exit 1 naming %q", err, out.String(), wantFail)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("cairn verify of a corrupted store exit = %v; want 1", err)
			}
		}
		if first < 0 {
			first = rep.Events
		}
		if last >= first+verifyLoadedEventsMin && rep.Events > last {
			live++
			t.Logf("verify under load: %d events, %d rounds, ok %v", rep.Events, rep.Rounds, rep.OK)
		}
		last = rep.Events
	}
}

// corruptIdemKey rewrites, in the stopped store at dir, the Idempotency-Key
// of one player's grant to the key of another of that player's events, and
// returns the start of the I3 violation's detail the audit must report.
func corruptIdemKey(t *testing.T, dir string) string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: testPebbleLogger{t}})
	if err != nil {
		t.Fatalf("open the store to corrupt it: %v", err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("e/"), UpperBound: []byte("e0")})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	firstKey := map[hunt.PlayerID]string{}
	for valid := it.First(); valid; valid = it.Next() {
		var ev hunt.Event
		if err := hunt.DecodeEvent(it.Value(), &ev); err != nil {
			t.Fatalf("decode %x: %v", it.Key(), err)
		}
		k, ok := firstKey[ev.Player]
		if !ok {
			firstKey[ev.Player] = ev.Key
			continue
		}
		if ev.Kind != hunt.KindClaimCompleted || ev.Outcome != hunt.Granted || ev.Key == k {
			continue
		}
		ev.Key = k
		if err := db.Set(bytes.Clone(it.Key()), hunt.AppendEvent(nil, &ev), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("player %s key %q decided twice", ev.Player, k)
	}
	t.Fatal("no player with a grant after another event in the log")
	return ""
}

// testPebbleLogger sends Pebble's logs to the test's log.
type testPebbleLogger struct{ t *testing.T }

func (l testPebbleLogger) Infof(format string, args ...any)  { l.t.Logf("pebble: "+format, args...) }
func (l testPebbleLogger) Errorf(format string, args ...any) { l.t.Logf("pebble: "+format, args...) }
func (l testPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
