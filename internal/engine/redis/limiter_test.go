package redis

import (
	"context"
	"testing"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
)

// TestLimiterSharedAcrossNodes: two nodes on one Redis draw from one bucket
// per key, so a player gets the burst once, not once per node; other keys
// are independent; a refusal says how long to wait.
func TestLimiterSharedAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	a := start(t, testConfig(srv, func(c *Config) { c.Consumer = "node-a" }))
	b := start(t, testConfig(srv, func(c *Config) { c.Consumer = "node-b" }))
	const burst = 10
	la, err := a.NewLimiter(0.5, burst) // a token every 2 s: none comes back during the test
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.NewLimiter(0.5, burst)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	allowed := 0
	for i := 0; i < 3*burst; i++ {
		l := la
		if i%2 == 1 {
			l = lb
		}
		ok, wait, err := l.Allow(ctx, "p1")
		if err != nil {
			t.Fatalf("Allow #%d = %v", i, err)
		}
		if ok {
			allowed++
		} else if wait <= 0 {
			t.Fatalf("Allow #%d refused with retry-after %v; want > 0", i, wait)
		}
	}
	if allowed != burst {
		t.Fatalf("allowed %d of %d requests over two nodes; want exactly the burst %d", allowed, 3*burst, burst)
	}
	if ok, _, err := lb.Allow(ctx, "p2"); err != nil || !ok {
		t.Fatalf("Allow(other key) = %v, %v; want allowed", ok, err)
	}
	if _, err := a.NewLimiter(0, 1); err == nil {
		t.Fatalf("NewLimiter(rate 0) = nil error; want %v", ErrLimiterConfig)
	}
}
