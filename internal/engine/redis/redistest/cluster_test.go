package redistest

import (
	"testing"
	"time"
)

// TestClusterFailover: the harness's 3+3 cluster fails over as the failover
// tests rely on: a primary killed (SIGKILL) is replaced by its replica; a
// primary frozen (SIGSTOP) past the node timeout is replaced too and, once
// resumed, rejoins as a replica; the cluster is ok again after each.
func TestClusterFailover(t *testing.T) {
	c := StartCluster(t, 3, 1500*time.Millisecond) // long enough that a starved CI machine does not fail over on its own
	var primaries []*Server
	for _, s := range c.Servers {
		if s.Port > clusterPortMax {
			t.Errorf("server port %d above %d", s.Port, clusterPortMax)
		}
		if Role(s.Addr()) == "master" {
			primaries = append(primaries, s)
		}
	}
	if len(primaries) != 3 {
		t.Fatalf("%d primaries; want 3", len(primaries))
	}

	killed, heir := primaries[0], c.Replica(primaries[0])
	if heir == nil {
		t.Fatalf("no replica of %s", killed.Addr())
	}
	killed.Kill()
	c.WaitRole(heir, "master")
	c.WaitOK()

	frozen, heir2 := primaries[1], c.Replica(primaries[1])
	if heir2 == nil {
		t.Fatalf("no replica of %s", frozen.Addr())
	}
	frozen.Pause()
	c.WaitRole(heir2, "master")
	frozen.Resume()
	c.WaitRole(frozen, "slave")
	c.WaitOK()
}
