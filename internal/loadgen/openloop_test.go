package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// fixedPlanner sends the same GET every time.
type fixedPlanner struct{ path string }

func (p fixedPlanner) next(int64) *request {
	return &request{kind: opWallet, method: http.MethodGet, path: p.path}
}

// stallServer answers every request after stall (or when the client gives up).
func stallServer(t *testing.T, stall time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		tm := time.NewTimer(stall)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-r.Context().Done():
		}
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// testClient is a client of srv whose load requests end when ctx does.
func testClient(ctx context.Context, t *testing.T, srv *httptest.Server, conns int) *client {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(ctx, u, testAdmin, conns, 30*time.Second)
	t.Cleanup(c.close)
	return c
}

// TestOpenLoopAgainstStallingServer is the open-loop property itself: a
// server that takes 1 s per request cannot slow the generator down. At
// 50 req/s for 2 s it still sends the 100 requests the schedule says, and
// the latency it reports (from each request's scheduled time) is ≥ 1 s.
func TestOpenLoopAgainstStallingServer(t *testing.T) {
	srv, got := stallServer(t, time.Second)
	c := testClient(context.Background(), t, srv, 4096)
	rec := newRecorder()
	rate := Rate{From: 50, To: 50}
	const d = 2 * time.Second
	start := openLoop(context.Background(), c, rec, rate, d, make(inflight, 4096), fixedPlanner{"/stall"})
	var res Result
	rec.fill(&res, start)

	want := rate.Count(d)
	if want != 100 {
		t.Fatalf("Rate{50}.Count(2s) = %d; want 100", want)
	}
	if res.Sent < want-1 || res.Sent > want+1 {
		t.Errorf("openLoop(50/s, 2s) sent %d requests; want %d ± 1", res.Sent, want)
	}
	if n := got.Load(); n < want-1 || n > want+1 {
		t.Errorf("server received %d requests; want %d ± 1 (the schedule, not fewer)", n, want)
	}
	if res.Responses != res.Sent || res.Errors != 0 {
		t.Errorf("responses %d, errors %d (%v); want %d responses and no errors", res.Responses, res.Errors, res.ErrorSamples, res.Sent)
	}
	if res.P99MS < 1000 {
		t.Errorf("p99 = %.1f ms against a server stalling 1 s; want ≥ 1000 ms", res.P99MS)
	}
	if res.P50MS < 1000 {
		t.Errorf("p50 = %.1f ms against a server stalling 1 s; want ≥ 1000 ms", res.P50MS)
	}
}

// TestOpenLoopSaturatedClient: with 5 slots and a stalling server, requests
// due while every slot is busy are counted as "client saturated" errors,
// never queued behind the slow ones.
func TestOpenLoopSaturatedClient(t *testing.T) {
	srv, got := stallServer(t, time.Second)
	c := testClient(context.Background(), t, srv, 5)
	rec := newRecorder()
	rate := Rate{From: 40, To: 40}
	start := openLoop(context.Background(), c, rec, rate, 500*time.Millisecond, make(inflight, 5), fixedPlanner{"/stall"})
	var res Result
	rec.fill(&res, start)
	if res.Scheduled != 20 {
		t.Errorf("scheduled = %d; want 20", res.Scheduled)
	}
	if res.Sent != 5 || got.Load() != 5 {
		t.Errorf("sent %d, server saw %d; want 5 (the in-flight bound)", res.Sent, got.Load())
	}
	if n := res.ErrorKinds[errSaturated]; n != 15 || res.Errors != 15 {
		t.Errorf("error kinds = %v (total %d); want %q: 15", res.ErrorKinds, res.Errors, errSaturated)
	}
}

// TestOpenLoopStopsOnCancel: cancelling the run stops the schedule and the
// requests in flight; openLoop returns promptly with what it had.
func TestOpenLoopStopsOnCancel(t *testing.T) {
	srv, _ := stallServer(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	c := testClient(ctx, t, srv, 100)
	rec := newRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		openLoop(ctx, c, rec, Rate{From: 100, To: 100}, time.Hour, make(inflight, 100), fixedPlanner{"/stall"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for rec.progress().sent < 5 {
		if time.Now().After(deadline) {
			t.Fatal("openLoop sent fewer than 5 requests in 10 s")
		}
		time.Sleep(5 * time.Millisecond) // polling the counter, not waiting for an effect
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("openLoop did not return within 10 s of cancel")
	}
	var res Result
	rec.fill(&res, time.Now())
	if res.Scheduled >= 100*3600 || res.Responses != 0 {
		t.Errorf("after cancel: scheduled %d, responses %d; want the schedule cut short and no answers", res.Scheduled, res.Responses)
	}
	if res.ErrorKinds[errCancelled] != res.Sent || res.Errors != res.Sent {
		t.Errorf("after cancel: errors %d %v for %d sent; want every request in flight counted as %q", res.Errors, res.ErrorKinds, res.Sent, errCancelled)
	}
}
