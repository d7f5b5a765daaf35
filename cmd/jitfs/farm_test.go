package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/bench"
)

// TestFarmZoneCache is the multi-node test: the emulator behind the
// emulated WAN, the zone cache (nginx, deploy/zone-cache) in front of it,
// and 8 nodes, each its own `jitfs mount` process with its own cache,
// reading the same frames at once with every file's bytes checked on
// every node. Through the zone cache every byte crosses the WAN about
// once (origin bytes ≤ 1.1 × the distinct bytes read), against about 8 ×
// with each node reading GCS directly; with the zone cache killed halfway,
// every node keeps reading through GCS and no read fails.
func TestFarmZoneCache(t *testing.T) {
	out, code := runJitfs(t, "bench", "--farm", "--farm-nodes", "8", "--farm-kill-zone", "--farm-scale", "0.25",
		"--rtt", "10ms", "--bandwidth", "200MB/s", "--json")
	if code != 0 {
		t.Fatalf("jitfs bench --farm exited %d:\n%s", code, out)
	}
	var rep bench.FarmReport
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rows := map[string]bench.FarmRow{}
	for _, row := range rep.Rows {
		rows[row.Mode] = row
	}
	if len(rep.Rows) != 4 || len(rows) != 4 || rep.DistinctBytes == 0 {
		t.Fatalf("want 4 rows (gcs, zone, zone warm, zone killed halfway) over a job:\n%s", out)
	}
	want := 8 * rep.Files
	for _, row := range rep.Rows {
		if row.Failed != 0 || row.Verified != want {
			t.Errorf("%s: %d reads failed (%s), %d of %d files verified", row.Mode, row.Failed, row.FirstError, row.Verified, want)
		}
		if row.Nodes != 8 {
			t.Errorf("%s: %d nodes", row.Mode, row.Nodes)
		}
	}
	direct, zone, warm, killed := rows["gcs"], rows["zone"], rows["zone, warm"], rows["zone, killed halfway"]
	// Fresh nodes on a warm zone cache send the origin nothing but
	// listings and stats.
	if warm.OriginBytes != 0 || warm.OriginRequests != 0 {
		t.Errorf("fresh nodes on a warm zone cache made the origin send %d bytes in %d requests", warm.OriginBytes, warm.OriginRequests)
	}
	if r := zone.OriginRatio(rep.DistinctBytes); r > 1.1 {
		t.Errorf("through the zone cache the origin sent %.2f × the distinct bytes, want ≤ 1.1", r)
	}
	if r := direct.OriginRatio(rep.DistinctBytes); r < 7 {
		t.Errorf("8 nodes reading GCS directly made the origin send only %.2f × the distinct bytes: the test does not measure what it claims", r)
	}
	if killed.ZoneKilled == 0 {
		t.Errorf("the zone cache was never killed:\n%s", out)
	}
	// Killed halfway, the nodes read the second half from GCS directly:
	// more than once per byte, but each node only what it had not read.
	if r := killed.OriginRatio(rep.DistinctBytes); r <= zone.OriginRatio(rep.DistinctBytes) || r > direct.OriginRatio(rep.DistinctBytes) {
		t.Errorf("zone killed halfway: origin sent %.2f × distinct, want between the zone's %.2f and direct's %.2f",
			r, zone.OriginRatio(rep.DistinctBytes), direct.OriginRatio(rep.DistinctBytes))
	}
}
