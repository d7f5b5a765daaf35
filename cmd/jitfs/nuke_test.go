package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/trace"
)

// nukeProbe is a NUKE_PATH plug-in the end-to-end test adds next to
// nuke-callbacks: at the end of the render it stops before the jitfs
// callbacks release the job (Write-class callbacks run before '*' ones), so
// the test can read the daemon's status while the job is still there.
const nukeProbe = `import os, time
import nuke

def _pause():
    open(os.environ["NUKE_PROBE_READY"], "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.environ["NUKE_PROBE_GO"]) and time.time() < deadline:
        time.sleep(0.02)

nuke.addAfterRender(_pause)
`

// TestNukeCallbacksEndToEnd renders the Nuke fixture show with the nuke
// stub and nuke-callbacks against a real jitfs mount and its hook API, after
// the render agent's step (jitfs prefetch --wait of what Nuke reads before
// any callback runs), and proves from the mount's trace that no predicted
// file was fetched from GCS while the render read it: every FUSE read of
// those files was a cache hit.
func TestNukeCallbacksEndToEnd(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is required for the Nuke hook test: %v", err)
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(repo, "nuke-callbacks", "plugin")
	tests := filepath.Join(repo, "nuke-callbacks", "tests")
	cli := filepath.Join(tests, "stubs", "nuke_cli.py")

	w := newWorld(t, false)
	sock := filepath.Join(t.TempDir(), "jitfs.sock")
	tracePath := filepath.Join(t.TempDir(), "mount.jsonl.zst")
	// Without passthrough every read of the mount reaches the daemon and is
	// in the trace with its cache outcome.
	d := w.mountForTest("show", "", "--socket", sock, "--trace", tracePath, "--passthrough=false")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st, err := os.Stat(sock); err == nil && st.Mode()&os.ModeSocket != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s did not appear\n%s", sock, d.Log)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The show (nuke-callbacks/tests/testutil.py), its scripts naming files
	// under the mountpoint; uploaded to the bucket before anything under the
	// mount is looked up.
	staging := filepath.Join(t.TempDir(), "staging")
	local := filepath.Join(t.TempDir(), "local")
	out := filepath.Join(t.TempDir(), "renders")
	gen := exec.Command(py, "-c", fmt.Sprintf(
		"import sys; sys.path.insert(0, %q); import testutil; testutil.write_show(%q, %q, %q, %q)",
		tests, staging, d.mnt, local, out))
	gen.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("writing the show: %v\n%s", err, b)
	}
	nfiles := 0
	err = filepath.WalkDir(staging, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(staging, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w.Put("show/"+filepath.ToSlash(rel), b)
		nfiles++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The agent's step: what Nuke opens before any callback can ask for it.
	const job = "job-nuke-e2e"
	script := d.path("scripts/comp.nk")
	early := []string{script, d.path("precomp/fx.nk"), d.path("ocio/config.ocio")}
	outText, code := runJitfs(t, append([]string{"prefetch", "--socket", sock, "--wait", "60s", "--job", job}, early...)...)
	if code != 0 || !strings.Contains(outText, "3 resident") {
		t.Fatalf("agent prefetch: exit %d: %s", code, outText)
	}

	probe := filepath.Join(t.TempDir(), "probe")
	if err := os.MkdirAll(probe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(probe, "init.py"), []byte(nukeProbe), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	goFile := filepath.Join(t.TempDir(), "go")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	render := exec.CommandContext(ctx, py, cli, "-F", "1001-1004", "-X", "Write1", "-x", script)
	render.Env = append(os.Environ(),
		"NUKE_PATH="+plugin+string(os.PathListSeparator)+probe,
		"HOME="+t.TempDir(),
		"JITFS_SOCKET="+sock,
		"JITFS_JOB_ID="+job,
		"JITFS_TEST_TEXROOT="+d.path("textures"),
		// A shared 2-core machine: let a frame wait as long as it takes
		// (the daemon clamps it to its own limit).
		"JITFS_FRAME_WAIT_MS=60000",
		"NUKE_PROBE_READY="+ready,
		"NUKE_PROBE_GO="+goFile,
		"PYTHONDONTWRITEBYTECODE=1",
	)
	stderr := &testworld.Buffer{}
	render.Stdout, render.Stderr = stderr, stderr
	if err := render.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- render.Wait() }()

	// At the end of the render, before the job is released: the job is
	// known and nothing it asked for is still fetching. (Its missing files,
	// the texture and the Precomp's unrendered output, and whatever the
	// daemon's own frame learning guessed that does not exist, are wanted
	// with no bytes.) That every opened file is resident is checked below.
	var st hooks.JobStatus
	for {
		select {
		case err := <-done:
			t.Fatalf("the render ended before its last callback: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(ready); err == nil {
			break
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		rep := jitfsStatus(t, sock)
		st = hooks.JobStatus{}
		for _, j := range rep.Jobs {
			if j.ID == job {
				st = j
			}
		}
		if st.ID == job && rep.QueueDepth == 0 && rep.InFlight == 0 && rep.BytesOutstanding == 0 &&
			st.BytesResident == st.BytesWanted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not resident at the end of the render: %+v\n%s", rep, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("render: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "jitfs: nuke: 4 frame(s)") {
		t.Errorf("the callbacks did not report four frames:\n%s", stderr)
	}
	for _, v := range []string{"left", "right"} {
		for f := 1001; f <= 1004; f++ {
			if _, err := os.Stat(filepath.Join(out, v, fmt.Sprintf("comp.%04d.exr", f))); err != nil {
				t.Errorf("output: %v", err)
			}
		}
	}
	// afterRender released the job.
	for _, j := range jitfsStatus(t, sock).Jobs {
		if j.ID == job {
			t.Errorf("job still known after the render released it: %+v", j)
		}
	}

	// The trace: every read of a predicted file was served from the cache.
	// The ParticleCache is the one file the callbacks cannot predict (the
	// filename filter reports it as a miss as Nuke opens it).
	d.Stop()
	f, err := os.Open(tracePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, events, err := trace.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Root != d.mnt {
		t.Fatalf("trace root %q, mount %q", hdr.Root, d.mnt)
	}
	unpredicted := d.path("caches/particles.nkpc")
	opened := map[string]bool{}
	reads := map[string]int{}
	var cold []string
	for _, ev := range events {
		if ev.Path == unpredicted || ev.Err != "" {
			continue
		}
		switch ev.Op {
		case trace.OpOpen:
			if !ev.Dir {
				opened[ev.Path] = true
			}
		case trace.OpRead:
			reads[ev.Path]++
			if ev.Cache != "hit" || ev.Fetched != 0 {
				cold = append(cold, fmt.Sprintf("%s at %d: %s, %d bytes fetched", ev.Path, ev.Off, ev.Cache, ev.Fetched))
			}
		}
	}
	// Plates (2 views x 4), bg, loop, bounce, grain, spark, cache (2 x 4),
	// textures, LUTs, the OCIO config, the scripts, the geometry.
	if len(opened) < 30 {
		t.Fatalf("only %d files of the mount were opened: %v", len(opened), opened)
	}
	for p := range opened {
		if reads[p] == 0 {
			t.Errorf("%s was opened but never read through the mount", p)
		}
	}
	if int(st.Resident) < len(opened) {
		t.Errorf("the job had %d files resident at the end of the render; the render opened %d", st.Resident, len(opened))
	}
	if len(cold) > 0 {
		t.Errorf("%d reads of predicted files waited on GCS:\n%s", len(cold), strings.Join(cold, "\n"))
	}
	t.Logf("%d files in the bucket; %d predicted files opened, %d reads, all cache hits; job %d files wanted, %d resident",
		nfiles, len(opened), sumInts(reads), st.Wanted, st.Resident)
}

func jitfsStatus(t *testing.T, sock string) hooks.StatusReply {
	t.Helper()
	out, code := runJitfs(t, "status", "--socket", sock, "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, out)
	}
	var rep hooks.StatusReply
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status: %v: %s", err, out)
	}
	return rep
}

func sumInts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
