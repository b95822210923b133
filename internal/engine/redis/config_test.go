package redis

import (
	"strings"
	"testing"
)

// TestClusterURL: redis-cluster:// and rediss-cluster:// URLs are parsed
// into seeds, credentials and TLS; malformed ones are refused with a
// message that never shows the password; a cluster needs direct mode and
// asks one replica by default.
func TestClusterURL(t *testing.T) {
	cu, err := parseClusterURL("rediss-cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
	if err != nil || !cu.tls || cu.user != "app" || cu.password != "s@cret" || cu.host != "10.0.0.1" ||
		strings.Join(cu.addrs, " ") != "10.0.0.1:7000 10.0.0.2:7001" {
		t.Fatalf("parseClusterURL = %+v, %v", cu, err)
	}
	if cu, err := parseClusterURL("redis-cluster://h:1/0"); err != nil || cu.tls || len(cu.addrs) != 1 {
		t.Fatalf("parseClusterURL(one seed) = %+v, %v", cu, err)
	}
	for _, bad := range []string{
		"redis-cluster://", "redis-cluster://h", "redis-cluster://h:0", "redis-cluster://h:70000",
		"redis-cluster://h:1,", "redis-cluster://h:1/2", "redis-cluster://h:1?x=1", "redis-cluster://:pw@:1",
		"redis-cluster://" + strings.Repeat("h:1,", clusterAddrsMax) + "h:1",
	} {
		if _, err := parseClusterURL(bad); err == nil {
			t.Errorf("parseClusterURL(%q) accepted", bad)
		}
	}
	err = Config{URL: "redis-cluster://user:topsecret@h:1/9", Direct: true}.Validate()
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("Validate(bad db) = %v; want an error without the password", err)
	}
	if err := (Config{URL: "redis-cluster://h:1"}).Validate(); err == nil || !strings.Contains(err.Error(), "direct") {
		t.Fatalf("Validate(cluster, stream mode) = %v; want refused for needing direct mode", err)
	}
	for _, c := range []struct {
		url      string
		in, want int
	}{
		{"redis-cluster://h:1", 0, 1}, {"redis-cluster://h:1", -1, 0}, {"redis-cluster://h:1", 2, 2},
		{"redis://h:1/0", 0, 0}, {"redis://h:1/0", -1, 0}, {"redis://h:1/0", 1, 1},
	} {
		cfg := Config{URL: c.url, Direct: true, MinReplicas: c.in}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate(%s, MinReplicas %d) = %v", c.url, c.in, err)
		}
		if got := cfg.withDefaults().MinReplicas; got != c.want {
			t.Errorf("MinReplicas %d with %s = %d after defaults; want %d", c.in, c.url, got, c.want)
		}
	}
	if s := redactURL("redis-cluster://u:pw@h:1,h:2"); strings.Contains(s, "pw") {
		t.Errorf("redactURL = %q shows the password", s)
	}
}
