package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/trace"
)

func direct(up string) (string, func() error, error) { return up, func() error { return nil }, nil }

func TestWorkloadShape(t *testing.T) {
	h := trace.Header{Format: trace.Format, Root: "/show"}
	evs := []trace.Event{
		{Op: trace.OpStat, Path: "/show/tex", Size: 4096}, // a directory stat'ed without a Dir flag
		{Op: trace.OpOpen, Path: "/show/tex/a.exr", Size: 1000},
		{Op: trace.OpRead, Path: "/show/tex/a.exr", Off: 0, Len: 600, N: 600},
		{Op: trace.OpRead, Path: "/show/tex/a.exr", Off: 400, Len: 600, N: 600},
		{Op: trace.OpRead, Path: "/show/cache/b.mdd", Off: 5000, Len: 100, N: 100}, // no stat: size from the read
		{Op: trace.OpMmap, Path: "/show/lib.blend", Off: 0, Len: 8192},
		{Op: trace.OpStat, Path: "/show/lib.blend", Size: 5000},
		{Op: trace.OpStat, Path: "/show/missing.exr", Err: "ENOENT"},
		{Op: trace.OpStat, Path: "/usr/lib/x.so", Size: 1},
	}
	w, err := NewWorkload("t", h, evs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"tex/a.exr": 1000, "cache/b.mdd": 5100, "lib.blend": 5000}
	if len(w.Files) != len(want) {
		t.Fatalf("files = %v, want %v", w.Files, want)
	}
	for f, s := range want {
		if w.Files[f] != s {
			t.Errorf("size of %s = %d, want %d", f, w.Files[f], s)
		}
	}
	// 1000 (overlapping reads) + 100 + 5000 (mmap clipped to the size).
	if w.Needed != 6100 {
		t.Errorf("needed = %d, want 6100", w.Needed)
	}
	show, err := ReadShow("tex/a.exr\t1000\ntex/b.exr\t77\ntex\t5\n# comment\n")
	if err != nil {
		t.Fatal(err)
	}
	w.AddShow(show)
	if w.Files["tex/b.exr"] != 77 || len(w.Files) != 4 || w.Needed != 6100 {
		t.Errorf("after AddShow: %v, needed %d", w.Files, w.Needed)
	}
	for _, bad := range []string{"a\n", "/abs\t1\n", "../x\t1\n", "a\t-1\n", "a/./b\t1\n"} {
		if _, err := ReadShow(strings.ReplaceAll(bad, "\\", "\\")); err == nil {
			t.Errorf("ReadShow(%q) accepted", bad)
		}
	}
	if _, err := NewWorkload("t", trace.Header{Root: "/"}, evs); err == nil {
		t.Error("a trace without a data root was accepted")
	}
}

func TestSyntheticWorkloads(t *testing.T) {
	if w := SmallFiles(100, 1000, 16); len(w.Files) != 100 || w.Needed != 100*1000 {
		t.Errorf("small files: %d files, %d needed", len(w.Files), w.Needed)
	}
	if w := SequentialLarge(10 << 20); w.Needed != 10<<20 || w.Bytes() != 10<<20 {
		t.Errorf("sequential: needed %d bytes %d", w.Needed, w.Bytes())
	}
	if w := RandomSmall(64<<20, 100); w.Needed > 100*4096 || w.Needed < 90*4096 {
		t.Errorf("random: needed %d", w.Needed)
	}
	if a, b := Content("x", 100), Content("x", 100); string(a) != string(b) {
		t.Error("content is not deterministic")
	}
}

// TestRunMatrix runs the whole matrix on real mounts against the emulator
// (without the emulated WAN, which needs a network namespace; the command's
// own test covers that) and checks what each strategy must cost.
func TestRunMatrix(t *testing.T) {
	wls := []*Workload{SmallFiles(60, 20000, 4), SequentialLarge(12 << 20), RandomSmall(32<<20, 40)}
	rep, err := Run(context.Background(), Config{Workloads: wls, Network: direct, WorkDir: t.TempDir(),
		Link: Link{Bandwidth: 100e6}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 6*len(wls) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), 6*len(wls))
	}
	for i, row := range rep.Rows {
		w := wls[i/6]
		if row.Read < w.Needed {
			t.Errorf("%s/%s read %d bytes, workload needs %d", row.Workload, row.Strategy, row.Read, w.Needed)
		}
		switch row.Strategy {
		case "pre-sync":
			if row.LinkBytes != w.Bytes() || row.CopyTime <= 0 {
				t.Errorf("pre-sync of %s moved %d bytes (want %d), copy %v s", w.Name, row.LinkBytes, w.Bytes(), row.CopyTime)
			}
		case "jitfs cold", "jitfs cold, no speculation":
			if row.LinkBytes < w.Needed || row.Requests == 0 {
				t.Errorf("cold %s: %d bytes, %d requests", w.Name, row.LinkBytes, row.Requests)
			}
		case "jitfs warm", "jitfs restarted":
			// Data comes from the cache; a restarted daemon re-lists
			// directories (metadata is not persisted) but fetches no bytes.
			if row.LinkBytes != 0 {
				t.Errorf("%s %s fetched %d bytes", row.Strategy, w.Name, row.LinkBytes)
			}
			if row.Strategy == "jitfs warm" && row.Requests != 0 {
				t.Errorf("warm %s made %d requests", w.Name, row.Requests)
			}
		case "jitfs cold + prefetch":
			// The manifest is the workload's own trace: every needed byte
			// is fetched, by the engine or by the replay's reads.
			if row.LinkBytes < w.Needed || row.PrefetchFrom != w.Name {
				t.Errorf("prefetch %s: %d bytes from %q", w.Name, row.LinkBytes, row.PrefetchFrom)
			}
		default:
			t.Errorf("unknown strategy %q", row.Strategy)
		}
	}
	// The random workload is where lazy fetching pays: far less than the
	// object crosses the link.
	for _, row := range rep.Rows {
		if row.Workload == "random-small" && row.Strategy == "jitfs cold" && row.LinkBytes >= 32<<20/2 {
			t.Errorf("random reads fetched %d bytes of a 32 MiB object", row.LinkBytes)
		}
	}
	var md stringsBuilder
	rep.Markdown(&md)
	if len(md) == 0 {
		t.Error("empty markdown")
	}
}

type stringsBuilder []byte

func (s *stringsBuilder) Write(p []byte) (int, error) { *s = append(*s, p...); return len(p), nil }
