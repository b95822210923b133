package redistest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of durable servers on 127.0.0.1: Primaries
// primaries, each with one replica, created with redis-cli --cluster create.
// Every server listens on a port <= 55535 and its cluster bus on port+10000.
type Cluster struct {
	t       testing.TB
	Servers []*Server // as passed to --cluster create: primaries first, then replicas; AddShard appends
	// NodeTimeout is cluster-node-timeout: a primary silent this long is
	// failed over to its replica.
	NodeTimeout time.Duration
	cli         string       // redis-cli
	used        map[int]bool // ports taken by this cluster's servers
}

// clusterPortMax keeps the bus port (port+10000) a valid port below the
// ephemeral range's top.
const clusterPortMax = 55535

// StartCluster starts primaries primaries and as many replicas, joins them
// into one cluster with the 16384 slots spread over the primaries, waits
// until every node reports cluster_state:ok, and stops every server when
// the test ends.
func StartCluster(t testing.TB, primaries int, nodeTimeout time.Duration) *Cluster {
	t.Helper()
	bin := Binary(t)
	cli := filepath.Join(filepath.Dir(bin), "redis-cli")
	if _, err := exec.LookPath(cli); err != nil {
		if cli, err = exec.LookPath("redis-cli"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("redistest: redis-cli not found next to %s or on $PATH and CI=true; install redis-tools", bin)
			}
			t.Skipf("redistest: redis-cli not found next to %s or on $PATH (install redis-tools); skipping", bin)
		}
	}
	c := &Cluster{t: t, NodeTimeout: nodeTimeout, cli: cli, used: map[int]bool{}}
	args := []string{"--cluster", "create"}
	for range 2 * primaries {
		s := c.startServer()
		c.Servers = append(c.Servers, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: %s %s: %v\n%s", cli, strings.Join(args, " "), err, out)
	}
	c.WaitOK()
	c.WaitLinked()
	return c
}

// startServer starts one cluster-enabled server, not yet in the cluster.
func (c *Cluster) startServer() *Server {
	c.t.Helper()
	port, err := clusterPort(c.used)
	if err != nil {
		c.t.Fatalf("redistest: cluster port: %v", err)
	}
	return Start(c.t, func(s *Server) {
		s.Port = port
		s.extra = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(c.NodeTimeout.Milliseconds(), 10),
			"--cluster-replica-validity-factor", "0", "--cluster-require-full-coverage", "no"}
	})
}

// WaitLinked waits until every primary's replica acknowledges a write
// (WAIT 1): a replica that has just synced can be online a while before its
// first acknowledgement comes back, which a short replica timeout would take
// for a missing replica. Fails the test after 30 s.
func (c *Cluster) WaitLinked() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Primaries() {
		for !acknowledged(s.Addr()) {
			if time.Now().After(deadline) {
				c.t.Fatalf("redistest: the replica of %s acknowledges no write within 30s", s.Addr())
			}
			time.Sleep(20 * time.Millisecond) // polling the link, not a wait for an event
		}
	}
}

// acknowledged writes a probe key of a slot the primary at addr owns and
// reports whether WAIT 1 200 on the same connection counts a replica.
func acknowledged(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	send := func(args ...string) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		return strings.TrimRight(line, "\r\n"), err
	}
	for i := range 64 { // some probe key hashes to a slot of this primary
		reply, err := send("SET", "cairn-test:link-probe:"+strconv.Itoa(i), "1")
		if err != nil {
			return false
		}
		if reply != "+OK" {
			continue // -MOVED: another primary's slot
		}
		reply, err = send("WAIT", "1", "200")
		return err == nil && reply == ":1"
	}
	return false
}

// clusterPort finds a port p <= clusterPortMax with p and p+10000 free.
func clusterPort(used map[int]bool) (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(clusterPortMax-20000)
		if used[p] || used[p+10000] || used[p-10000] {
			continue
		}
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		used[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port pair found below %d", clusterPortMax)
}

// Addrs lists every server's host:port (the seeds for a cluster client).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr()
	}
	return out
}

// Info runs one command on one server over a fresh connection and returns
// the bulk reply (CLUSTER INFO, ROLE, INFO replication, ...).
func Info(addr string, cmd ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(cmd))
	for _, a := range cmd {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redistest: reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	default:
		return "", fmt.Errorf("redistest: reply %q", line)
	}
}

// Role is "master" or "slave" as the server at addr reports it (INFO replication).
func Role(addr string) string {
	info, err := Info(addr, "INFO", "replication")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "role:"); ok {
			return v
		}
	}
	return ""
}

// WaitOK waits until every running server reports cluster_state:ok and
// knows as many primaries as the cluster was created with, failing the test
// after 30 s.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, s := range c.Servers {
			if s.cmd == nil {
				continue
			}
			info, err := Info(s.Addr(), "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_size:"+strconv.Itoa(len(c.Servers)/2)+"\r\n") {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: cluster %v not ok within 30s", c.Addrs())
		}
		time.Sleep(20 * time.Millisecond) // polling the cluster's state, not a wait for an event
	}
}

// URL is the cluster's seed list as a Cairn store URL: every server,
// redis-cluster://host:port,host:port,...
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// Primaries lists the running servers that report the master role.
func (c *Cluster) Primaries() []*Server {
	var out []*Server
	for _, s := range c.Servers {
		if s.cmd != nil && Role(s.Addr()) == "master" {
			out = append(out, s)
		}
	}
	return out
}

// Replica finds the running server that replicates primary, or nil.
func (c *Cluster) Replica(primary *Server) *Server {
	for _, s := range c.Servers {
		if s == primary || s.cmd == nil {
			continue
		}
		info, err := Info(s.Addr(), "INFO", "replication")
		if err == nil && strings.Contains(info, "master_port:"+strconv.Itoa(primary.Port)+"\r\n") {
			return s
		}
	}
	return nil
}

// WaitRole waits until s reports role ("master" or "slave"), failing the
// test after 30 s.
func (c *Cluster) WaitRole(s *Server, role string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for Role(s.Addr()) != role {
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: %s is %q after 30s; want %s", s.Addr(), Role(s.Addr()), role)
		}
		time.Sleep(20 * time.Millisecond) // polling the role, not a wait for an event
	}
}

// FlushAll empties every primary (FLUSHALL; functions stay loaded; the
// replicas follow), so a test that reuses the cluster starts from empty
// state. It may be called from any goroutine.
func (c *Cluster) FlushAll() error {
	for _, s := range c.Primaries() {
		if _, err := Info(s.Addr(), "FLUSHALL"); err != nil {
			return fmt.Errorf("redistest: FLUSHALL on %s: %w", s.Addr(), err)
		}
	}
	return nil
}
