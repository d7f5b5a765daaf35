package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/jitfs/jitfs/internal/testworld"
)

// runArgs are the flags every `jitfs run` in these tests takes: the
// world's proxy, and cache and staging under the test's directory.
func (w *world) runArgs(dir string) []string {
	return []string{"run", "--endpoint", w.Proxy.Addr(), "--cache-dir", filepath.Join(dir, "cache"),
		"--staging-dir", filepath.Join(dir, "staging"), "--upload-max-backoff", "500ms", "--log-level", "warn"}
}

func TestRunExitCodes(t *testing.T) {
	w := newWorld(t, false)
	scene := w.PutRandom("show/shots/sh010/sh010.scene", 4321)
	c := w.gcsClient()
	dir := t.TempDir()
	out := func(name string) string { return filepath.Join(dir, name) }

	// The command reads the scene mount and writes the output area; its
	// exit status is jitfs run's, and its outputs are durable when it
	// returns. DIRs are created.
	args := append(w.runArgs(dir), "--mount", "gs://"+testBucket+"/show:"+out("show"),
		"--output", "gs://"+testBucket+"/jobs/r1/out:"+out("o1"), "--",
		"sh", "-c", `test -S "$JITFS_SOCKET" && cp "$JITFS_MOUNTS/shots/sh010/sh010.scene" "$JITFS_OUTPUTS/copy.scene" && exit 3`)
	o, code := runJitfs(t, args...)
	if code != 3 {
		t.Fatalf("exit %d, want the command's 3\n%s", code, o)
	}
	if err := checkObject(t, c, "jobs/r1/out/copy.scene", scene); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{out("show"), out("o1")} {
		if ok, _ := mountinfo.Mounted(m); ok {
			t.Fatalf("%s still mounted after jitfs run", m)
		}
	}

	// Death by a signal is 128+N.
	o, code = runJitfs(t, append(w.runArgs(dir), "--output", "gs://"+testBucket+"/jobs/r2/out:"+out("o2"), "--",
		"sh", "-c", `echo partial > "$JITFS_OUTPUTS/f.txt"; kill -KILL $$`)...)
	if code != 128+int(syscall.SIGKILL) {
		t.Fatalf("killed command: exit %d\n%s", code, o)
	}
	// Its outputs were still flushed.
	if err := checkObject(t, c, "jobs/r2/out/f.txt", []byte("partial\n")); err != nil {
		t.Fatal(err)
	}

	// Outputs that cannot be made durable: 75, and the list.
	w.Proxy.UploadFailCode.Store(403)
	w.Proxy.UploadOutage.Store(true)
	o, code = runJitfs(t, append(w.runArgs(dir), "--output", "gs://"+testBucket+"/jobs/r3/out:"+out("o3"), "--",
		"sh", "-c", `echo x > "$JITFS_OUTPUTS/frame.exr"`)...)
	if code != exitNotDurable || !strings.Contains(o, "NOT durable") || !strings.Contains(o, filepath.Join(out("o3"), "frame.exr")) {
		t.Fatalf("undurable outputs: exit %d\n%s", code, o)
	}
	// The next run on the same staging directory uploads them.
	w.Proxy.UploadOutage.Store(false)
	o, code = runJitfs(t, append(w.runArgs(dir), "--output", "gs://"+testBucket+"/jobs/r3/out:"+out("o3"), "--", "true")...)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s", code, o)
	}
	if err := checkObject(t, c, "jobs/r3/out/frame.exr", []byte("x\n")); err != nil {
		t.Fatal(err)
	}

	// Setup failures: the command never runs.
	marker := out("ran")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--output", "gs://no-such-bucket/x:" + out("o4")}, exitSetup, "bucket not found"},
		{[]string{"--output", "gs://" + testBucket + "/x:/proc/forbidden"}, exitSetup, "mountpoint"},
		{[]string{"--output", "s3://b/x:" + out("o5")}, 2, "gs://"},
		{[]string{"--output", "gs://" + testBucket + "/x"}, 2, "DIR"},
		{[]string{"--prefetch", out("m.txt"), "--output", "gs://" + testBucket + "/x:" + out("o6")}, 2, "--prefetch needs a --mount"},
	} {
		a := append(append(w.runArgs(dir), tc.args...), "--", "touch", marker)
		o, code := runJitfs(t, a...)
		if code != tc.code || !strings.Contains(o, tc.want) {
			t.Errorf("jitfs run %v: exit %d, want %d with %q\n%s", tc.args, code, tc.code, tc.want, o)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("jitfs run %v ran the command after a setup failure", tc.args)
		}
	}
	o, code = runJitfs(t, append(w.runArgs(dir), "--output", "gs://"+testBucket+"/jobs/r7:"+out("o7"), "--", "no-such-command-jitfs")...)
	if code != exitNoCommand {
		t.Fatalf("missing command: exit %d\n%s", code, o)
	}
}

// TestRunForwardsSignals sends SIGTERM to jitfs run, as a scheduler
// stopping a task does: the command gets it, writes its last output, and
// that output is durable before jitfs run exits with the command's code.
func TestRunForwardsSignals(t *testing.T) {
	w := newWorld(t, false)
	c := w.gcsClient()
	dir := t.TempDir()
	script := filepath.Join(dir, "render.sh")
	os.WriteFile(script, []byte(`#!/bin/sh
trap 'echo "checkpoint after TERM" > "$JITFS_OUTPUTS/checkpoint.txt"; exit 7' TERM
echo started > "$JITFS_OUTPUTS/started.txt"
while :; do sleep 0.05; done
`), 0o755)
	outDir := filepath.Join(dir, "out")
	cmd := testworld.Command(context.Background(), append(w.runArgs(dir), "--output", "gs://"+testBucket+"/jobs/sig:"+outDir, "--", script)...)
	var logs testworld.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command to start", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(outDir, "started.txt"))
		return err == nil
	})
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("jitfs run did not exit after SIGTERM\n%s", logs.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Fatalf("exit %d, want the command's 7\n%s", code, logs.String())
	}
	if err := checkObject(t, c, "jobs/sig/checkpoint.txt", []byte("checkpoint after TERM\n")); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if err := checkObject(t, c, "jobs/sig/started.txt", []byte("started\n")); err != nil {
		t.Fatal(err)
	}
}

func requireTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s is not installed (scripts/test.sh installs it): %v", tool, err)
	}
}

// TestRunBlenderRendersToOutputArea renders frames with Debian's Blender
// headless through jitfs run: the scene from a scene mount, the frames to
// an output area, and checks the frames in GCS against what Blender wrote.
func TestRunBlenderRendersToOutputArea(t *testing.T) {
	requireTool(t, "blender")
	w := newWorld(t, false)
	c := w.gcsClient()
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.MkdirAll(tmp, 0o755)

	// A tiny animated scene: Cycles on the CPU, 32x32, 2 samples, no
	// denoising (Debian's Blender has no OpenImageDenoise).
	blend := filepath.Join(dir, "sh010.blend")
	build := `
import bpy
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.cycles.device = 'CPU'
s.cycles.samples = 2
s.cycles.use_denoising = False
s.render.resolution_x = 32
s.render.resolution_y = 32
s.render.resolution_percentage = 100
s.frame_start, s.frame_end = 1, 3
cube = bpy.data.objects['Cube']
for f, x in ((1, -1.0), (3, 1.0)):
    cube.location.x = x
    cube.keyframe_insert('location', frame=f)
bpy.ops.wm.save_as_mainfile(filepath=` + fmt.Sprintf("%q", blend) + `)
`
	bc := exec.Command("blender", "-b", "--factory-startup", "-noaudio", "--python-exit-code", "1", "--python-expr", build)
	bc.Env = append(os.Environ(), "TMPDIR="+tmp)
	if o, err := bc.CombinedOutput(); err != nil {
		t.Fatalf("building the scene: %v\n%s", err, o)
	}
	data, err := os.ReadFile(blend)
	if err != nil {
		t.Fatal(err)
	}
	w.Put("show/shots/sh010/sh010.blend", data)

	show, outDir, sums := filepath.Join(dir, "show"), filepath.Join(dir, "out"), filepath.Join(dir, "sums.txt")
	// After rendering, the command records what Blender wrote, read back
	// through the output area, to compare with GCS.
	render := `blender -b --factory-startup -noaudio -t 1 "$0" -o "$1/frame_####" -F PNG -s 1 -e 3 -a && sha256sum "$1"/frame_*.png > "$2"`
	args := append(w.runArgs(dir), "--mount", "gs://"+testBucket+"/show:"+show, "--output", "gs://"+testBucket+"/jobs/blend/out:"+outDir,
		"--", "env", "TMPDIR="+tmp, "sh", "-c", render, filepath.Join(show, "shots/sh010/sh010.blend"), outDir, sums)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := testworld.Command(ctx, args...)
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jitfs run blender: %v\n%s", err, o)
	}
	f, err := os.Open(sums)
	if err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	defer f.Close()
	frames := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, p, _ := strings.Cut(sc.Text(), "  ")
		name := "jobs/blend/out/" + filepath.Base(p)
		a, err := c.Stat(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := make([]byte, a.Size)
		if err := c.ReadRange(ctx, name, a.Generation, 0, got); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(got)
		if hex.EncodeToString(h[:]) != sum {
			t.Fatalf("%s in GCS differs from what Blender wrote", name)
		}
		if !strings.HasPrefix(string(got), "\x89PNG\r\n\x1a\n") {
			t.Fatalf("%s is not a PNG", name)
		}
		if err := checkObject(t, c, name, got); err != nil {
			t.Fatal(err)
		}
		frames++
	}
	if frames != 3 {
		t.Fatalf("%d frames rendered, want 3\n%s", frames, o)
	}
	if got := w.listObjects("jobs/blend/out/"); len(got) != 3 {
		t.Fatalf("objects in the output prefix: %v", got)
	}
}

// TestRunPrefetchManifest: `jitfs run --prefetch` takes a manifest whose
// paths are relative to the first --mount (as a scene's dependency list is
// written) or absolute under it; its files are resident before the
// command starts.
func TestRunPrefetchManifest(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/tex/wall.tx", 50_000)
	w.PutRandom("show/tex/floor.tx", 60_000)
	dir := t.TempDir()
	show := filepath.Join(dir, "show")
	manifest := filepath.Join(dir, "frame.txt")
	if err := os.WriteFile(manifest, []byte("tex/wall.tx\n"+filepath.Join(show, "tex/floor.tx")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(w.runArgs(dir), "--log-level", "info", "--mount", "gs://"+testBucket+"/show:"+show, "--prefetch", manifest, "--",
		"true")
	o, code := runJitfs(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, o)
	}
	// With the default wait the run starts once both are in.
	if !strings.Contains(o, `msg="prefetch done" resident=2 queued=0 missing=0 failed=0 outside_mounts=0 timed_out=false`) {
		t.Fatalf("the manifest's two files were not prefetched:\n%s", o)
	}
}

// A missing or malformed --prefetch manifest is a usage error, said in
// one message before anything is mounted (the mountpoint is not even
// created), not a setup failure once the mounts are up.
func TestRunPrefetchManifestUsage(t *testing.T) {
	dir := t.TempDir()
	show := filepath.Join(dir, "show")
	malformed := filepath.Join(dir, "bad.txt")
	os.WriteFile(malformed, []byte("tex/a.####.exr 3-1\n/etc/passwd\n"), 0o644)
	for _, tc := range []struct {
		manifest, want string
	}{
		{filepath.Join(dir, "none.txt"), "jitfs run: --prefetch: usage: open " + filepath.Join(dir, "none.txt") + ": no such file or directory\n"},
		{malformed, "jitfs run: --prefetch: 2 bad manifest lines:\n  " + malformed + ":1: frame list"},
	} {
		out, code := runJitfs(t, "run", "--cache-dir", filepath.Join(dir, "cache"), "--mount", "gs://"+testBucket+"/show:"+show,
			"--daemon", filepath.Join(dir, "no-daemon.sock"), "--prefetch", tc.manifest, "--", "true")
		if code != 2 || !strings.HasPrefix(out, tc.want) {
			t.Errorf("--prefetch %s: exit %d, want 2 and %q:\n%s", tc.manifest, code, tc.want, out)
		}
		if _, err := os.Stat(show); err == nil {
			t.Errorf("--prefetch %s: the mountpoint was made before the manifest was read", tc.manifest)
		}
	}
}
