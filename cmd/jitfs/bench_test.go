package main

import (
	"encoding/json"
	"encoding/xml"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/bench"
)

// TestBenchShort runs `jitfs bench --short` end to end, as CI does so the
// bench cannot rot: a private network namespace, the emulated link, the
// smallest checked-in trace and the small synthetic workloads.
func TestBenchShort(t *testing.T) {
	// The peers have their own test, on one workload.
	out, code := runJitfs(t, "bench", "--short", "--json", "--traces", "../../testdata/traces",
		"--rtt", "10ms", "--bandwidth", "200MB/s", "--peers", "none")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Progress lines go to stderr, which runJitfs merges; the report is
	// the JSON object at the end.
	var rep bench.Report
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{\n"):]), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.RTT != 10 || rep.Bandwidth != 200e6 {
		t.Errorf("link = %v ms, %d B/s", rep.RTT, rep.Bandwidth)
	}
	// pre-sync, cold, warm, restarted, cold learned, cold + prefetch, cold
	// with no speculation.
	if len(rep.Workloads) != 5 || len(rep.Rows) != 7*len(rep.Workloads) {
		t.Fatalf("%d workloads, %d rows:\n%s", len(rep.Workloads), len(rep.Rows), out)
	}
	if !strings.HasPrefix(rep.Workloads[0].Name, "povray_") && !strings.HasPrefix(rep.Workloads[0].Name, "blender_") {
		t.Errorf("first workload %q is not a checked-in trace", rep.Workloads[0].Name)
	}
	info := map[string]bench.WorkloadInfo{}
	for _, w := range rep.Workloads {
		info[w.Name] = w
	}
	for _, r := range rep.Rows {
		w := info[r.Workload]
		switch r.Strategy {
		case "pre-sync":
			if r.LinkBytes != w.Bytes {
				t.Errorf("%s pre-sync moved %d bytes, the prefix holds %d", w.Name, r.LinkBytes, w.Bytes)
			}
			// The cap is aggregate: sixteen parallel downloads still
			// cannot beat it (a lower bound holds on a loaded machine).
			if min := float64(w.Bytes) / 200e6 * 0.9; r.CopyTime < min {
				t.Errorf("%s copied %d bytes in %.3f s, faster than the 200 MB/s link allows (%.3f s)", w.Name, w.Bytes, r.CopyTime, min)
			}
		case "jitfs cold", "jitfs cold, no speculation", "jitfs cold, learned":
			if r.LinkBytes < w.Needed || r.TTFB < 0.010 {
				t.Errorf("%s cold: %d bytes over the link (needs %d), first byte at %.3f s (RTT 10 ms)", w.Name, r.LinkBytes, w.Needed, r.TTFB)
			}
		case "jitfs warm", "jitfs restarted":
			if r.LinkBytes != 0 {
				t.Errorf("%s %s moved %d bytes", w.Name, r.Strategy, r.LinkBytes)
			}
		}
		if r.Total <= 0 || r.XIdeal <= 0 {
			t.Errorf("row %+v", r)
		}
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--bandwidth", "fast"},
		{"bench", "--rtt", "-1s"},
		{"bench", "--traces", "/nonexistent", "--synthetic=false"},
		{"bench", "--plot", "chart.gif"},
		{"bench", "--peers", "gcsfuse,s3fs"},
		{"bench", "--rclone", "/nonexistent/rclone"},
		{"bench", "--short", "--traces", "", "--workloads", "small-files-300x16,nope"},
	} {
		out, code := runJitfs(t, args...)
		if code != 2 || !oneLine(out) {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
}

// TestBenchPeers runs `jitfs bench` on one small workload with the peers
// and a chart, over the emulated link. An installed peer has a cold and a
// warm row that read what the workload reads, with the link's count of
// its bytes and requests, and the jitfs rows are compared with the
// fastest peer; a peer that is not installed is reported as such, as a
// user on a fresh machine sees it.
func TestBenchPeers(t *testing.T) {
	chart := filepath.Join(t.TempDir(), "bench.svg")
	// Speculation is TestBenchShort's: here it would add a row and double
	// the jitfs rows' time under the race detector.
	out, code := runJitfs(t, "bench", "--short", "--json", "--traces", "", "--workloads", "small-files-300x16",
		"--rtt", "10ms", "--bandwidth", "200MB/s", "--speculate", "none", "--plot", chart)
	t.Log(out[:strings.Index(out, "{\n")])
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{\n"):]), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(rep.Workloads) != 1 || rep.Workloads[0].Name != "small-files-300x16" || len(rep.Peers) != len(bench.PeerNames) {
		t.Fatalf("workloads %+v, peers %+v", rep.Workloads, rep.Peers)
	}
	w := rep.Workloads[0]
	rows := map[string]bench.Row{}
	for _, r := range rep.Rows {
		rows[r.Strategy] = r
	}
	local := rows["pre-sync"]
	installed := 0
	for _, p := range rep.Peers {
		if _, err := exec.LookPath(p.Name); err != nil {
			if p.Missing != bench.NotInstalled {
				t.Errorf("%s is not on PATH, the report says %+v", p.Name, p)
			}
			if _, ok := rows[p.Name+" cold"]; ok {
				t.Errorf("a %s row without %s", p.Name, p.Name)
			}
			continue
		}
		installed++
		if p.Missing != "" || len(p.Errors) > 0 || p.Version == "" {
			t.Fatalf("%s: %+v", p.Name, p)
		}
		for _, ph := range []string{"cold", "warm"} {
			r, ok := rows[p.Name+" "+ph]
			if !ok {
				t.Fatalf("no %s %s row:\n%s", p.Name, ph, out)
			}
			if r.Read != local.Read || r.Ops != local.Ops || r.Total <= 0 || r.XIdeal <= 0 {
				t.Errorf("%s %s: read %d bytes in %d ops (local disk: %d in %d), %.3f s", p.Name, ph, r.Read, r.Ops, local.Read, local.Ops, r.Total)
			}
		}
		if cold := rows[p.Name+" cold"]; cold.LinkBytes < w.Needed || cold.Requests == 0 {
			t.Errorf("%s cold: %d bytes over the link (needs %d), %d requests", p.Name, cold.LinkBytes, w.Needed, cold.Requests)
		}
	}
	for _, r := range rep.Rows {
		if strings.HasPrefix(r.Strategy, "jitfs ") && (r.XBestPeer > 0) != (installed > 0) {
			t.Errorf("%s: × best peer %v with %d peers installed", r.Strategy, r.XBestPeer, installed)
		}
	}
	svg := string(mustRead(t, chart))
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil || !strings.Contains(svg, "small-files-300x16") || !strings.Contains(svg, "jitfs cold") {
		t.Errorf("chart (%v):\n%.400s", err, svg)
	}
}

func TestPreviousFrame(t *testing.T) {
	for in, want := range map[string]string{
		"blender_sh010_f03": "blender_sh010_f02", "x_f10": "x_f09", "x_f1": "", "x_f01": "",
		"blender_sh010_f01-04": "", "povray_balcony": "", "a_fxy": "",
	} {
		if got := previousFrame(in); got != want {
			t.Errorf("previousFrame(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNodeBenchShort runs `jitfs bench --node --short`: the node daemon's
// figures are produced, the tasks through the daemon move one task's
// bytes, and the restarted daemon serves with no request.
func TestNodeBenchShort(t *testing.T) {
	out, code := runJitfs(t, "bench", "--node", "--short", "--json", "--rtt", "10ms", "--bandwidth", "200MB/s")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var rep bench.NodeReport
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{\n"):]), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Tasks != 4 || rep.OneTaskBytes <= 0 || rep.Sequential.Total <= 0 || rep.Concurrent.Total <= 0 {
		t.Fatalf("tasks figure missing: %+v", rep)
	}
	// One job's tasks share one cache: together they move what one moves.
	if rep.Concurrent.LinkBytes > rep.OneTaskBytes*105/100 {
		t.Errorf("4 tasks through the node moved %d bytes, one task %d", rep.Concurrent.LinkBytes, rep.OneTaskBytes)
	}
	if rep.Memory.RSSBytes <= 0 || rep.Memory.Jobs != 2 {
		t.Errorf("memory figure: %+v", rep.Memory)
	}
	if r := rep.Restart; r.Objects != 2000 || r.Lists+r.Stats+r.Reads != 0 || r.ServeSeconds <= 0 {
		t.Errorf("restart figure: %+v", r)
	}
}
