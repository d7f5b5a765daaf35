package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/bench"
)

// TestBenchShort runs `jitfs bench --short` end to end, as CI does so the
// bench cannot rot: a private network namespace, the emulated link, the
// smallest checked-in trace and the small synthetic workloads.
func TestBenchShort(t *testing.T) {
	out, code := runJitfs(t, "bench", "--short", "--json", "--traces", "../../testdata/traces",
		"--rtt", "10ms", "--bandwidth", "200MB/s")
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
	if len(rep.Workloads) != 5 || len(rep.Rows) != 6*len(rep.Workloads) {
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
		case "jitfs cold", "jitfs cold, no speculation":
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
	} {
		out, code := runJitfs(t, args...)
		if code != 2 || !oneLine(out) {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
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
