package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestErrorAndLagMetrics: error answers are counted by status in
// cairn_http_errors_total, and /metrics carries the projection's lag per
// partition when the lag collector is registered (node registers it).
func TestErrorAndLagMetrics(t *testing.T) {
	e := newEnv(t, envOption{})
	if err := e.reg.Register(e.api.LagCollector()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := e.do(req{method: "GET", path: "/v1/no-such-thing"}); r.status != http.StatusNotFound {
			t.Fatalf("GET /v1/no-such-thing = %v; want 404", r)
		}
	}
	if r := e.do(req{method: "GET", path: "/v1/wallet"}); r.status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/wallet without a token = %v; want 401", r)
	}
	r := e.do(req{method: "GET", path: "/metrics"})
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %v", r)
	}
	body := string(r.body)
	for _, want := range []string{
		`cairn_http_errors_total{status="404"} 3`,
		`cairn_http_errors_total{status="401"} 1`,
		`cairn_http_errors_total{status="503"} 0`,
		`cairn_partition_lag_events{partition="0"} 0`,
		`cairn_partition_lag_seconds{partition="0"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
