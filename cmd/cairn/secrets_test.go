package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// envWithout is the test process's environment minus every CAIRN_ variable,
// plus extra.
func envWithout(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// TestSecretsOperatorValueNotWritten: with CAIRN_SECRET set and
// CAIRN_ADMIN_TOKEN unset, serve generates the admin token only, writes only
// it (mode 0600) and says it generated only it; the operator's secret
// appears nowhere in the data directory.
func TestSecretsOperatorValueNotWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a real server; skipped with -short")
	}
	data := t.TempDir()
	p := startServeEnv(t, cairnBinary(t), data, freeAddr(t), envWithout("CAIRN_SECRET="+testSecret))
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait() // and the copy of its output into p.logs
	path := filepath.Join(data, secretsFile)
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), testSecret) || strings.Contains(string(body), envSecret+"=") {
		t.Errorf("%s holds the operator's CAIRN_SECRET:\n%s", path, body)
	}
	if !strings.Contains(string(body), envAdminToken+"=") || st.Mode().Perm() != 0o600 {
		t.Errorf("%s (mode %04o) = %q; want the generated admin token, mode 0600", path, st.Mode().Perm(), body)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "generated "+envAdminToken) || strings.Contains(logs, "generated "+envSecret) {
		t.Errorf("serve's log does not say it generated exactly CAIRN_ADMIN_TOKEN:\n%s", logs)
	}
	// The token subcommand finds the operator's secret in the environment and
	// needs nothing from the file.
	out, err := runCairn(t, data, envWithout("CAIRN_SECRET="+testSecret), "token", "--player", "p1", "--data", data)
	if err != nil || strings.Count(out, ".") != 2 {
		t.Errorf("cairn token with CAIRN_SECRET set = %v\n%s", err, out)
	}
}

// TestSecretsInvalidWritesNothing: a start refused for an invalid value
// leaves no secrets file behind.
func TestSecretsInvalidWritesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	for _, env := range [][]string{
		{"CAIRN_ADMIN_TOKEN=short"},
		{"CAIRN_SECRET=short"},
		{"CAIRN_SECRET=short", "CAIRN_ADMIN_TOKEN=" + testAdmin},
	} {
		data := t.TempDir()
		out, err := runCairn(t, data, envWithout(env...), "serve", "--addr", freeAddr(t), "--data", data)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "must be at least") {
			t.Errorf("serve with %v = %v\n%s\nwant exit 1 naming the short value", env, err, out)
		}
		if _, err := os.Stat(filepath.Join(data, secretsFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("serve with %v left %s behind (stat: %v)", env, secretsFile, err)
		}
	}
}

// TestSecretsFileModeRefused: serve, token and load refuse a secrets file
// that the group or others may read, naming its mode and the fix, and
// accept it once it is 0600.
func TestSecretsFileModeRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	data := t.TempDir()
	path := filepath.Join(data, secretsFile)
	body := envSecret + "=" + testSecret + "\n" + envAdminToken + "=" + testAdmin + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"serve", "--addr", freeAddr(t), "--data", data},
			{"token", "--player", "p1", "--data", data},
		} {
			out, err := runCairn(t, data, envWithout(), args...)
			var ee *exec.ExitError
			want := []string{path, "mode 0" + octal(mode), "chmod 600"}
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !containsAll(out, want...) {
				t.Errorf("cairn %s with a %04o secrets file = %v\n%s\nwant exit 1 naming %q", args[0], mode, err, out, want)
			}
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCairn(t, data, envWithout(), "token", "--player", "p1", "--data", data); err != nil {
		t.Errorf("cairn token with a 0600 secrets file = %v\n%s", err, out)
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return string([]byte{digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// runCairn runs the default binary in dir with env and returns its output.
func runCairn(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(cairnBinary(t), args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}
