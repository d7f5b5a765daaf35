package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
)

// `jitfs status` on an output area shows its outputs (staged bytes of the
// budget, files by state, what is durable, the first not durable) and not
// the cache and prefetch lines, which are all zeros there.
func TestStatusShowsOutputs(t *testing.T) {
	w := newWorld(t, false)
	w.Proxy.UploadOutage.Store(true)
	t.Cleanup(func() { w.Proxy.UploadOutage.Store(false) })
	d := w.outputForTest("jobs/s/out", "")
	if err := os.MkdirAll(d.path("beauty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(d.path("beauty"), "b.1001.exr", testworld.RandBytes("1001", 300_000)); err != nil {
		t.Fatal(err)
	}
	out, code := runJitfs(t, "status", d.mnt)
	if code != 0 || !strings.Contains(out, "  outputs     gs://"+testBucket+"/jobs/s/out") || !strings.Contains(out, "  files       1 file not durable (") ||
		!strings.Contains(out, "    pending   "+d.path("beauty/b.1001.exr")+" (") || strings.Contains(out, "  cache ") ||
		strings.Contains(out, "  prefetch ") || strings.Contains(out, "now:") {
		t.Fatalf("status of a held output: exit %d:\n%s", code, out)
	}
	w.Proxy.UploadOutage.Store(false)
	testworld.WaitFor(t, "the output durable in status", func() bool {
		out, code = runJitfs(t, "status", d.mnt)
		return code == 0 && strings.Contains(out, "  files       0 files not durable; 1 file durable (293 KiB)")
	})
	if !strings.Contains(out, "  uploads     ") || strings.Contains(out, "pending ") {
		t.Errorf("status once durable:\n%s", out)
	}
}

// A job whose file is still being fetched has no size yet: its share is
// by files, not 100% of 0 B.
func TestStatusJobShareByFiles(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, hooks.StatusReply{Status: hooks.Status{CacheBudgetBytes: 1 << 30, Jobs: []hooks.JobStatus{
		{ID: "J1", Wanted: 1}, {ID: "J2", Wanted: 4, Resident: 1}, {ID: "J3", Wanted: 2, Resident: 1, BytesWanted: 400, BytesResident: 100}}}}, false)
	for _, want := range []string{"J1                   0/1 file, 0 B/0 B (0%)", "J2                   1/4 files, 0 B/0 B (25%)", "J3                   1/2 files, 100 B/400 B (25%)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}
