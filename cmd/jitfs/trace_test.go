package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/jitfs/jitfs/trace"
)

func readTrace(t *testing.T, p string) (trace.Header, []trace.Event) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, evs, err := trace.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return h, evs
}

// traceCounts is what a replay must reproduce of a recording.
type traceCounts struct {
	Opens, ENOENT, Readdirs, Releases int
	Files                             map[string]bool
	Bytes                             int64
}

func countTrace(root string, evs []trace.Event) traceCounts {
	c := traceCounts{Files: map[string]bool{}}
	for _, ev := range evs {
		rel := strings.TrimPrefix(ev.Path, root)
		switch ev.Op {
		case trace.OpOpen:
			c.Opens++
			c.Files[rel] = true
		case trace.OpLookup:
			if ev.Err == "ENOENT" {
				c.ENOENT++
			}
		case trace.OpReaddir:
			c.Readdirs++
		case trace.OpRelease:
			c.Releases++
		case trace.OpRead:
			c.Bytes += ev.N
		}
	}
	return c
}

// TestMountTraceRecordAndReplay records a render-like workload on a real
// mount, checks the events, replays the trace on a second, cold mount that
// records too, and checks the replay reproduced the recorded operations.
func TestMountTraceRecordAndReplay(t *testing.T) {
	w := newWorld(t, false)
	scene := w.PutRandom("show/shots/sh010.blend", 300_000)
	w.PutRandom("show/tex/a.exr", 3<<20)
	texB := w.PutRandom("show/tex/b.exr", 50_000)
	tmp := t.TempDir()
	t1 := filepath.Join(tmp, "record.jsonl.zst")
	d := w.mountForTest("show", "", "--trace", t1)

	if _, err := os.Stat(d.path("tex/missing.exr")); errnoOf(err) != syscall.ENOENT {
		t.Fatalf("stat of a missing file: %v", err)
	}
	mustEqualBytes(t, "scene", mustRead(t, d.path("shots/sh010.blend")), scene)
	ents, err := os.ReadDir(d.path("tex"))
	if err != nil || len(ents) != 2 {
		t.Fatalf("readdir: %v %v", ents, err)
	}
	f, err := os.Open(d.path("tex/a.exr"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if _, err := f.ReadAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustEqualBytes(t, "b", mustRead(t, d.path("tex/b.exr")), texB)
	d.Stop()

	h, evs := readTrace(t, t1)
	if h.Source != "mount" || h.Root != d.mnt || h.Bucket != testBucket || h.Prefix != "show/" {
		t.Fatalf("header = %+v", h)
	}
	end := evs[len(evs)-1]
	if end.Op != trace.OpEnd || end.Dropped != 0 || end.Events != int64(len(evs)-1) {
		t.Fatalf("trailer = %+v", end)
	}
	var sawENOENT, sawSceneOpen, sawMiss, sawReaddir bool
	lastT := 0.0
	for _, ev := range evs[:len(evs)-1] {
		if ev.T < 0 || ev.Dur < 0 || !trace.Under(ev.Path, d.mnt) {
			t.Errorf("bad event %+v", ev)
		}
		lastT = max(lastT, ev.T)
		switch {
		case ev.Op == trace.OpLookup && ev.Path == d.path("tex/missing.exr"):
			// FUSE reports the calling thread, one of this process's.
			sawENOENT = ev.Err == "ENOENT" && ev.Pid != 0
		case ev.Op == trace.OpOpen && ev.Path == d.path("shots/sh010.blend"):
			sawSceneOpen = ev.Size == int64(len(scene)) && ev.Fh != 0 && ev.Pid != 0
		case ev.Op == trace.OpRead && ev.Cache == "miss":
			sawMiss = sawMiss || ev.Fetched == ev.N && ev.N > 0
		case ev.Op == trace.OpReaddir && ev.Path == d.path("tex"):
			sawReaddir = ev.N == 2
		}
	}
	if !sawENOENT || !sawSceneOpen || !sawMiss || !sawReaddir {
		t.Errorf("missing events: ENOENT %v scene open %v miss %v readdir %v", sawENOENT, sawSceneOpen, sawMiss, sawReaddir)
	}
	rec := countTrace(d.mnt, evs)
	// The kernel sends RELEASE asynchronously after close and need not
	// send it at all for files closed just before an unmount.
	if rec.Opens != 3 || rec.ENOENT != 1 || rec.Readdirs != 1 || rec.Releases < 1 || rec.Releases > 3 {
		t.Errorf("recorded counts = %+v", rec)
	}

	// Replay on a second, cold mount that records as well.
	t2 := filepath.Join(tmp, "replay.jsonl.zst")
	d2 := w.mountForTest("show", "", "--trace", t2)
	out, code := runJitfs(t, "replay", t1, "--root", d2.mnt, "--json")
	if code != 0 {
		t.Fatalf("replay exited %d:\n%s", code, out)
	}
	var res struct {
		Errors int64 `json:"errors"`
		ENOENT int64 `json:"enoent"`
		Opens  int64 `json:"opens"`
		Bytes  int64 `json:"bytes_read"`
		TTFB   float64
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("replay output: %v\n%s", err, out)
	}
	if res.Errors != 0 || res.ENOENT != 1 || res.Opens != 3 || res.Bytes != rec.Bytes {
		t.Errorf("replay result %+v, recorded %+v", res, rec)
	}
	d2.Stop()
	_, evs2 := readTrace(t, t2)
	got := countTrace(d2.mnt, evs2)
	if got.Opens != rec.Opens || got.ENOENT != rec.ENOENT || got.Readdirs != rec.Readdirs || len(got.Files) != len(rec.Files) {
		t.Errorf("replayed mount saw %+v, recorded %+v", got, rec)
	}
	for f := range rec.Files {
		if !got.Files[f] {
			t.Errorf("replay never opened %s", f)
		}
	}
	t.Logf("recorded %d events, %d bytes read through FUSE; replay read %d through FUSE", len(evs), rec.Bytes, got.Bytes)
}

func TestMountTraceBadPath(t *testing.T) {
	w := newWorld(t, false)
	mnt := t.TempDir()
	out, code := runJitfs(t, "mount", "gs://"+testBucket+"/", mnt, "--endpoint", w.Proxy.Addr(),
		"--cache-dir", t.TempDir(), "--trace", "/nonexistent/dir/t.zst")
	if code != 1 || !strings.Contains(out, "trace") || !oneLine(out) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if ok, _ := mountinfo.Mounted(mnt); ok {
		t.Fatal("mounted despite a bad trace path")
	}
}

func TestReplayCommandErrors(t *testing.T) {
	out, code := runJitfs(t, "replay", "/nonexistent.trace", "--root", t.TempDir())
	if code != 1 || !strings.Contains(out, "nonexistent.trace") {
		t.Errorf("missing trace: exit %d: %s", code, out)
	}
	out, code = runJitfs(t, "replay", "x.trace")
	if code != 2 || !strings.Contains(out, "--root") {
		t.Errorf("no root: exit %d: %s", code, out)
	}
	// A trace naming a file the directory lacks: an unexpected error.
	p := filepath.Join(t.TempDir(), "t.jsonl")
	os.WriteFile(p, []byte(`{"format":"jitfs.trace/v1","source":"strace","root":"/show"}`+"\n"+
		`{"t":0,"pid":1,"op":"open","path":"/show/gone.exr","fh":3}`+"\n"), 0o644)
	out, code = runJitfs(t, "replay", p, "--root", t.TempDir())
	if code != 1 || !strings.Contains(out, "gone.exr") {
		t.Errorf("failed op: exit %d: %s", code, out)
	}
}
