package redistest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// replicaOf finds the running server that replicates primary.
func replicaOf(t *testing.T, c *Cluster, primary *Server) *Server {
	t.Helper()
	for _, s := range c.Servers {
		if s == primary || s.cmd == nil {
			continue
		}
		info, err := Info(s.Addr(), "INFO", "replication")
		if err == nil && strings.Contains(info, "master_port:"+strconv.Itoa(primary.Port)+"\r\n") {
			return s
		}
	}
	t.Fatalf("no replica of %s", primary.Addr())
	return nil
}

func waitRole(t *testing.T, s *Server, role string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for Role(s.Addr()) != role {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after 30s; want %s", s.Addr(), Role(s.Addr()), role)
		}
		time.Sleep(20 * time.Millisecond) // polling the role, not a wait for an event
	}
}

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

	killed, heir := primaries[0], replicaOf(t, c, primaries[0])
	killed.Kill()
	waitRole(t, heir, "master")
	c.WaitOK()

	frozen, heir2 := primaries[1], replicaOf(t, c, primaries[1])
	frozen.Pause()
	waitRole(t, heir2, "master")
	frozen.Resume()
	waitRole(t, frozen, "slave")
	c.WaitOK()
}
