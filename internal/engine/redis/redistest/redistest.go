// Package redistest runs throwaway redis-server processes for tests: each on
// a free 127.0.0.1 port with its own data directory, durable by default
// (appendonly yes, appendfsync always, no RDB snapshots), killable with
// SIGKILL and restartable on the same port and directory. StartCluster runs
// a Redis Cluster of such servers (primaries with one replica each) and
// ReplicaOf a plain replica.
//
// The machine's own Redis (6379) is never used. When the redis-server binary
// is missing, Start skips the test, except under CI=true where it fails.
// A Server is safe for use by one test goroutine at a time.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a starting server may take to answer PING.
const startTimeout = 15 * time.Second

// Server is one redis-server child process.
type Server struct {
	t        testing.TB
	bin      string
	Port     int
	Dir      string
	Volatile bool
	primary  string // host:port this server replicates, "" for a primary
	extra    []string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Option changes how a server starts.
type Option func(*Server)

// Volatile starts Redis without AOF (appendonly no), as a cache would run.
func Volatile() Option { return func(s *Server) { s.Volatile = true } }

// ReplicaOf starts the server as a replica of primary (--replicaof), durable
// like any other. Promote it with REPLICAOF NO ONE.
func ReplicaOf(primary *Server) Option { return func(s *Server) { s.primary = primary.Addr() } }

// Binary finds redis-server: $REDIS_SERVER, then /usr/bin/redis-server, then
// $PATH. It skips t when there is none, or fails it when CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	for _, c := range []string{os.Getenv("REDIS_SERVER"), "/usr/bin/redis-server"} {
		if c != "" {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("redistest: redis-server not found and CI=true; install the redis-server package")
	}
	t.Skip("redistest: redis-server not found (install the redis-server package); skipping")
	return ""
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), Dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	if s.Port == 0 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		s.Port = port
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is a redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() error {
	aof := []string{"--appendonly", "yes", "--appendfsync", "always"}
	if s.Volatile {
		aof = []string{"--appendonly", "no"}
	}
	args := append([]string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir, "--save", "",
		"--daemonize", "no", "--protected-mode", "no", "--logfile", filepath.Join(s.Dir, "redis.log"),
	}, aof...)
	args = append(args, s.extra...)
	if host, port, ok := strings.Cut(s.primary, ":"); ok {
		args = append(args, "--replicaof", host, port)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s: %w", s.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := Ping(s.Addr()); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redistest: redis on %s did not answer within %v: %v (log %s)", s.Addr(), startTimeout, err, s.logTail())
		}
		select {
		case <-s.exited:
			return fmt.Errorf("redistest: redis on %s exited at start (log %s)", s.Addr(), s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Kill sends SIGKILL (no shutdown, no final fsync) and waits for the exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process dies only once continued
	<-s.exited
	s.cmd = nil
}

// Pause stops the process (SIGSTOP): connections stay open, nothing answers,
// as with a hung Redis. Resume continues it.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("redistest: restart of a running server")
	}
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Stop kills the server if it runs (tests do not need a clean shutdown).
func (s *Server) Stop() { s.Kill() }

// Ping sends PING over a fresh connection and wants +PONG (not -LOADING).
func Ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return errors.New("redistest: PING answered " + strings.TrimSpace(line))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
