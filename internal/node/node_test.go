package node_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/node"
)

const (
	testSecret = "node-test-secret-0123456789abcdef"
	testAdmin  = "node-test-admin-token-0123456789"
)

func get(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// TestRun: a node with its own listeners serves the public and the admin
// routes apart, calls Started before serving, and stops cleanly (nil) when
// its context ends; a second Run is refused.
func TestRun(t *testing.T) {
	eng, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	started := make(chan struct{})
	n, err := node.New(context.Background(), node.Config{
		Engine: eng, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		API:     httpapi.Config{Secret: []byte(testSecret), AdminToken: testAdmin},
		Started: func(context.Context) error { close(started); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	<-started

	base, admin := "http://"+n.Addr().String(), "http://"+n.AdminAddr().String()
	deadline := time.Now().Add(20 * time.Second)
	for get(t, base+"/readyz") != http.StatusOK { // the engine starts after Started
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 in 20 s")
		}
		time.Sleep(2 * time.Millisecond) // polling readiness
	}
	if st := get(t, base+"/v1/admin/hunts"); st != http.StatusNotFound {
		t.Fatalf("admin route on the public listener = %d; want 404", st)
	}
	if st := get(t, admin+"/v1/admin/hunts"); st != http.StatusUnauthorized {
		t.Fatalf("admin route without a token on the admin listener = %d; want 401", st)
	}
	// The ops console is served with the admin routes, not on the public listener.
	if st := get(t, admin+node.ConsolePath); st != http.StatusOK {
		t.Fatalf("the ops console on the admin listener = %d; want 200", st)
	}
	if st := get(t, admin+node.ConsolePath+"api/stats"); st != http.StatusUnauthorized {
		t.Fatalf("the ops console's API without a token = %d; want 401", st)
	}
	if st := get(t, base+node.ConsolePath); st != http.StatusNotFound {
		t.Fatalf("the ops console on the public listener = %d; want 404", st)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v; want nil", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the listener still answers after Run returned")
	}
	if err := n.Run(context.Background()); !errors.Is(err, node.ErrAlreadyRun) {
		t.Fatalf("second Run = %v; want ErrAlreadyRun", err)
	}
}

// TestStartedError: an error from Started stops the node (engine and
// projection) and is what Run returns.
func TestStartedError(t *testing.T) {
	eng, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	boom := errors.New("boom")
	n, err := node.New(context.Background(), node.Config{
		Engine: eng, Addr: "127.0.0.1:0",
		API:     httpapi.Config{Secret: []byte(testSecret), AdminToken: testAdmin},
		Started: func(context.Context) error { return boom },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run = %v; want the Started error", err)
	}
}
