package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cairnhq/cairn/internal/engine"
)

// TestSnapshotEndpoint: POST /v1/admin/snapshot needs the admin token,
// writes a snapshot on the embedded store and says what it covers, and is
// 501 not_supported on a store without snapshots.
func TestSnapshotEndpoint(t *testing.T) {
	e := newEnv(t, envOption{})
	mustStatus(t, "snapshot with a player's token", e.do(req{method: "POST", path: "/v1/admin/snapshot", auth: e.token("alice")}), http.StatusUnauthorized)
	r := e.do(req{method: "POST", path: "/v1/admin/snapshot", auth: testAdmin})
	mustStatus(t, "snapshot", r, http.StatusOK)
	var info engine.SnapshotInfo
	if err := json.Unmarshal(r.body, &info); err != nil || !strings.HasPrefix(info.Name, "snap-") || info.Bytes <= 0 || info.Digest == "" {
		t.Fatalf("snapshot answer %s (%v); want a file name, its size and digest", r, err)
	}

	// A store that has no snapshots (the Redis engine): only the Engine interface.
	cfg := e.api.cfg
	cfg.Engine = struct{ engine.Engine }{cfg.Engine}
	plain, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := serveReal(t, plain.Handler())
	hr, _ := http.NewRequest("POST", base+"/v1/admin/snapshot", nil)
	hr.Header.Set("Authorization", "Bearer "+testAdmin)
	res, err := e.client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Code string `json:"code"`
	}
	err = json.NewDecoder(res.Body).Decode(&p)
	res.Body.Close()
	if res.StatusCode != http.StatusNotImplemented || err != nil || p.Code != "not_supported" {
		t.Fatalf("snapshot on a store without snapshots = %d %q (%v); want 501 not_supported", res.StatusCode, p.Code, err)
	}
}
