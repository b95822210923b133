package node_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/engine/redis"
	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/node"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// deployFiles are the dashboards and alert rules shipped in deploy/.
var deployFiles = []string{
	"../../deploy/grafana/cairn-dashboard.json",
	"../../deploy/prometheus/cairn-rules.yml",
	"../../deploy/prometheus/cairn-rules.test.yml",
}

// metricName matches the names of Cairn's own metrics and of the Go and
// process collectors it registers, wherever they appear in a file (queries,
// descriptions, annotations): every one must be exported.
var metricName = regexp.MustCompile(`\b(?:cairn|go|process)_[a-z0-9_]*[a-z0-9]\b`)

// TestDeployMetricsExist: every metric the Grafana dashboard and the
// Prometheus rules name is in /metrics of a real node: an embedded one, and
// a Redis one for the metrics only the Redis engine exports.
func TestDeployMetricsExist(t *testing.T) {
	named := map[string][]string{} // metric -> files naming it
	for _, f := range deployFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			if !slices.Contains(named[m], f) {
				named[m] = append(named[m], f)
			}
		}
	}
	if len(named) < 20 {
		t.Fatalf("found %d metric names in %v; the pattern or the files are wrong", len(named), deployFiles)
	}

	reg := prometheus.NewRegistry()
	met := telemetry.New(reg)
	eng, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Partitions: 4, Metrics: met})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	exported := scrape(t, eng, met, reg)
	var missing []string
	for m := range named {
		if !exported[m] {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return
	}
	slices.Sort(missing)
	t.Logf("not exported by an embedded node, looked for on a Redis node: %v", missing)

	srv := redistest.Start(t)
	reg = prometheus.NewRegistry()
	met = telemetry.New(reg)
	reng, err := redis.Open(context.Background(), redis.Config{URL: srv.URL(), Partitions: 4, Metrics: met})
	if err != nil {
		t.Fatal(err)
	}
	defer reng.Close()
	exported = scrape(t, reng, met, reg)
	for _, m := range missing {
		if !exported[m] {
			t.Errorf("%s (named in %v) is exported neither by an embedded nor by a Redis node", m, named[m])
		}
	}
}

// scrape runs a node over eng (whose metrics are m, registered in reg), waits
// until it is ready, and returns the series names of its /metrics: the
// names as written (cairn_batch_size_bucket) and the families
// (cairn_batch_size).
func scrape(t *testing.T, eng engine.Engine, m *telemetry.Metrics, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	n, err := node.New(context.Background(), node.Config{
		Engine: eng, Addr: "127.0.0.1:0", Metrics: m, Registry: reg,
		API: httpapi.Config{Secret: []byte(testSecret), AdminToken: testAdmin},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node Run = %v", err)
		}
	}()
	base := "http://" + n.Addr().String()
	deadline := time.Now().Add(20 * time.Second)
	for get(t, base+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 in 20 s")
		}
		time.Sleep(2 * time.Millisecond) // polling readiness
	}
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", res.StatusCode, err)
	}
	names := map[string]bool{}
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(rest)[0]] = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
