package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
)

// The include chain of a POV-Ray scene, each include in its own
// directory: with no hooks, every include costs the renderer a listing
// and a read in turn.
var includeChain = []string{"scene.pov", "inc/colors.inc", "lib/macros/shapes.inc", "tex/wood.inc"}

// putChain stores the chain under show/, version v of its bytes, and
// returns them by mount-relative path.
func putChain(w *world, v string) map[string][]byte {
	want := map[string][]byte{}
	for i, rel := range includeChain {
		b := testworld.RandBytes(rel+v, 20_000+7_000*i)
		w.Put("show/"+rel, b)
		want[rel] = b
	}
	return want
}

// renderChain opens and reads the chain as the renderer does, checking
// the bytes.
func renderChain(t *testing.T, d *jitfsd, want map[string][]byte, files ...string) {
	t.Helper()
	for _, rel := range files {
		mustEqualBytes(t, rel, mustRead(t, d.path(rel)), want[rel])
	}
}

func specStatus(t *testing.T, sock string) hooks.SpeculationStatus {
	t.Helper()
	sp := jitfsStatus(t, sock).Speculation
	if sp == nil {
		t.Fatal("speculation on, yet status reports none")
	}
	return *sp
}

func learnedFiles(t *testing.T, cacheDir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(cacheDir, "coopen", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCoOpenLearning: a render opening an include chain once teaches the
// mount its group, which is kept in the cache directory; after a restart
// on that cache, with every file of the chain changed since (so none of
// them is resident: the cache holds the old generations), opening the
// scene makes its includes resident before they are opened (four data
// requests at the proxy, and none more when the includes are read), with
// the new bytes, and status counts the three predictions used, none
// wasted.
func TestCoOpenLearning(t *testing.T) {
	w := newWorld(t, false)
	want := putChain(w, "v1")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d := w.mountForTest("show", cacheDir, "--socket", sock, "--speculate", "coopen")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	renderChain(t, d, want, includeChain...)
	// Learning fetches nothing: the first render is the lesson.
	if sp := specStatus(t, sock); sp.Predicted != 0 {
		t.Fatalf("predicted %+v while learning", sp)
	}
	d.Stop()
	if got := learnedFiles(t, cacheDir); len(got) != 1 {
		t.Fatalf("learned groups kept in %v, want one file for the source", got)
	}

	want = putChain(w, "v2")
	sock = filepath.Join(t.TempDir(), "hooks2.sock")
	d = w.mountForTest("show", cacheDir, "--socket", sock, "--speculate", "coopen")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	before := w.Proxy.MediaReqs.Load()
	renderChain(t, d, want, "scene.pov")
	var sp hooks.SpeculationStatus
	waitFor(t, "the includes fetched ahead of the renderer", 2*time.Minute, func() bool {
		sp = specStatus(t, sock)
		return sp.Fetched == 3
	})
	if got := w.Proxy.MediaReqs.Load() - before; got != 4 {
		t.Fatalf("%d data requests for the scene and its three includes fetched ahead", got)
	}
	renderChain(t, d, want, includeChain[1:]...)
	if got := w.Proxy.MediaReqs.Load() - before; got != 4 {
		t.Fatalf("%d data requests once the includes were read: they were not resident", got)
	}
	sp = specStatus(t, sock)
	if sp.Predicted != 3 || sp.Used != 3 || sp.Wasted != 0 || sp.Bytes != 27_000+34_000+41_000 ||
		sp.UsedBytes != sp.Bytes || sp.WastedBytes != 0 || sp.Kinds["coopen"] != 3 {
		t.Fatalf("speculation %+v, want 3 predicted by co-open (102,000 bytes), 3 used, none wasted", sp)
	}
	d.Stop()
}

// TestCoOpenOff: with the coopen kind left out of --speculate (the other
// kinds on), renders of the chain learn nothing (no file in the cache
// directory) and fetch nothing ahead.
func TestCoOpenOff(t *testing.T) {
	w := newWorld(t, false)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	for _, v := range []string{"v1", "v2"} {
		want := putChain(w, v)
		sock := filepath.Join(t.TempDir(), "hooks.sock")
		d := w.mountForTest("show", cacheDir, "--socket", sock, "--speculate", "siblings,sequences,metadata")
		waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
		before := w.Proxy.MediaReqs.Load()
		renderChain(t, d, want, includeChain...)
		renderChain(t, d, want, includeChain...)
		if sp := specStatus(t, sock); sp.Predicted != 0 || sp.Fetched != 0 {
			t.Fatalf("co-open off, yet %+v", sp)
		}
		if got := w.Proxy.MediaReqs.Load() - before; got != 4 {
			t.Fatalf("%d data requests for four files read twice", got)
		}
		d.Stop()
		if got := learnedFiles(t, cacheDir); len(got) != 0 {
			t.Fatalf("co-open off, yet groups kept in %v", got)
		}
	}
}

// TestCoOpenNodeJobs: on the node daemon, a job's task rendering the
// chain teaches the source's group; after the daemon restarts (the chain
// changed meanwhile), another job's task opening the scene has the
// includes fetched before it opens them, counted in that job's status.
func TestCoOpenNodeJobs(t *testing.T) {
	w := newWorld(t, false)
	want := putChain(w, "v1")
	dir := t.TempDir()
	render := func(n *noded, job string, gate string) <-chan runResult {
		td := filepath.Join(dir, job)
		script := "set -e; cp " + filepath.Join(td, "show", includeChain[0]) + " " + filepath.Join(dir, job+"-0") + "; " + gate
		for i, rel := range includeChain[1:] {
			script += fmt.Sprintf("; cp %q %q", filepath.Join(td, "show", rel), filepath.Join(dir, fmt.Sprintf("%s-%d", job, i+1)))
		}
		return n.startRun(t, "--job", job, "--mount", "gs://"+testBucket+"/show:"+filepath.Join(td, "show"), "--", "sh", "-c", script)
	}
	check := func(job string, want map[string][]byte) {
		t.Helper()
		for i, rel := range includeChain {
			mustEqualBytes(t, job+" "+rel, mustRead(t, filepath.Join(dir, fmt.Sprintf("%s-%d", job, i))), want[rel])
		}
	}
	n := w.startNode(dir, "--speculate", "coopen")
	if r := waitRun(t, "job A", render(n, "A", "true")); r.code != 0 {
		t.Fatalf("job A: exit %d\n%s\n%s", r.code, r.out, n.Log)
	}
	check("A", want)
	n.Stop()
	if got := learnedFiles(t, filepath.Join(dir, "cache")); len(got) != 1 {
		t.Fatalf("learned groups kept in %v, want one file for the source", got)
	}

	want = putChain(w, "v2")
	n = w.startNode(dir, "--speculate", "coopen")
	g := newGate(t)
	before := w.Proxy.MediaReqs.Load()
	b := render(n, "B", g.sh("scene"))
	waitFor(t, "job B's task to read the scene", 2*time.Minute, func() bool { return g.ready("scene") })
	spec := func() hooks.SpeculationStatus {
		for _, j := range n.status(t).Jobs {
			if j.ID == "B" && len(j.Sources) == 1 && j.Sources[0].Prefetch.Speculation != nil {
				return *j.Sources[0].Prefetch.Speculation
			}
		}
		return hooks.SpeculationStatus{}
	}
	waitFor(t, "the includes fetched ahead of job B's task", 2*time.Minute, func() bool { return spec().Fetched == 3 })
	if got := w.Proxy.MediaReqs.Load() - before; got != 4 {
		t.Fatalf("%d data requests for the scene and its three includes fetched ahead", got)
	}
	g.open(t)
	if r := waitRun(t, "job B", b); r.code != 0 {
		t.Fatalf("job B: exit %d\n%s\n%s", r.code, r.out, n.Log)
	}
	check("B", want)
	if got := w.Proxy.MediaReqs.Load() - before; got != 4 {
		t.Fatalf("%d data requests once job B read the includes: they were not resident", got)
	}
	if sp := spec(); sp.Predicted != 3 || sp.Used != 3 || sp.Wasted != 0 {
		t.Fatalf("job B's speculation %+v, want 3 predicted, 3 used, none wasted", sp)
	}
}

// BenchmarkCoOpenIncludeChain: a render reading a scene and twelve
// includes, each in its own directory, right after a restart with the
// chain changed (so nothing of it is resident), every data request
// held 20 ms at the proxy as a round trip of the bench's link would be.
// Without co-open the renderer pays one round trip per file in turn;
// with it, the includes are fetched at once while the scene is read.
//
//	go test ./cmd/jitfs -run '^$' -bench CoOpenIncludeChain -benchtime 5x
func BenchmarkCoOpenIncludeChain(b *testing.B) {
	files := []string{"scene.pov"}
	for i := range 12 {
		files = append(files, fmt.Sprintf("inc%02d/part%02d.inc", i, i))
	}
	for _, kind := range []string{"none", "coopen"} {
		b.Run(kind, func(b *testing.B) {
			w := testworld.New(b, testworld.Options{Bucket: testBucket})
			put := func(v int) map[string][]byte {
				m := map[string][]byte{}
				for _, f := range files {
					m[f] = testworld.RandBytes(fmt.Sprint(f, v), 16_000)
					w.Put("show/"+f, m[f])
				}
				return m
			}
			cacheDir := filepath.Join(b.TempDir(), "cache")
			render := func(v int, timed bool) {
				want := put(v)
				d := mountTB(b, w, "show", cacheDir, "--speculate", kind)
				w.Proxy.StallMedia.Store(int64(20 * time.Millisecond))
				if timed {
					b.StartTimer()
				}
				for _, f := range files {
					got, err := os.ReadFile(d.path(f))
					if err != nil || !bytes.Equal(got, want[f]) {
						b.Fatalf("%s: %v (or wrong bytes)", f, err)
					}
				}
				if timed {
					b.StopTimer()
				}
				w.Proxy.StallMedia.Store(0)
				d.Stop()
			}
			b.StopTimer()
			render(0, false) // the lesson
			b.ResetTimer()
			for i := range b.N {
				render(i+1, true)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/render")
		})
	}
}

// mountTB is mountForTest for a benchmark.
func mountTB(tb testing.TB, w *testworld.World, prefix, cacheDir string, extra ...string) *jitfsd {
	tb.Helper()
	mnt := filepath.Join(tb.TempDir(), "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	args := append([]string{"mount", "gs://" + testBucket + "/" + prefix, mnt, "--cache-dir", cacheDir,
		"--endpoint", w.Proxy.Addr(), "--cache-size", "1GiB"}, extra...)
	return &jitfsd{Daemon: testworld.StartDaemon(tb, mnt, func() bool { return socketReady(mnt, args) }, args...),
		mnt: mnt, cacheDir: cacheDir}
}

// TestCoOpenCorruptLearned: a mount whose learned groups were cut short
// (a disk full, a crash mid-copy) starts, says so in its log, serves the
// right bytes without fetching from the bad groups, and writes valid
// ones again.
func TestCoOpenCorruptLearned(t *testing.T) {
	w := newWorld(t, false)
	want := putChain(w, "v1")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	d := w.mountForTest("show", cacheDir, "--speculate", "coopen")
	renderChain(t, d, want, includeChain...)
	d.Stop()
	files := learnedFiles(t, cacheDir)
	if len(files) != 1 {
		t.Fatalf("learned groups kept in %v, want one file", files)
	}
	good, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}

	want = putChain(w, "v2")
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d = w.mountForTest("show", cacheDir, "--socket", sock, "--speculate", "coopen")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	if !strings.Contains(d.Log.String(), "co-open groups ignored") {
		t.Fatalf("no word of the bad groups in the log:\n%s", d.Log)
	}
	renderChain(t, d, want, includeChain...)
	if sp := specStatus(t, sock); sp.Predicted != 0 {
		t.Fatalf("predicted from bad groups: %+v", sp)
	}
	d.Stop()
	b, err := os.ReadFile(files[0])
	if err != nil || bytes.Equal(b, good[:len(good)/2]) {
		t.Fatalf("the bad groups were not replaced (%v)", err)
	}
}
