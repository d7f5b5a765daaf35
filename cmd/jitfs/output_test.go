package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
)

// outputForTest starts `jitfs output` for prefix against the world's
// proxy, with its staging under staging (a new directory when "").
func (w *world) outputForTest(prefix, staging string, extra ...string) *jitfsd {
	w.t.Helper()
	mnt := filepath.Join(w.t.TempDir(), "out")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if staging == "" {
		staging = filepath.Join(w.t.TempDir(), "staging")
	}
	args := append([]string{"output", "gs://" + testBucket + "/" + prefix, mnt, "--staging-dir", staging,
		"--endpoint", w.Proxy.Addr(), "--stop-flush-timeout", "2s", "--upload-max-backoff", "500ms"}, extra...)
	return &jitfsd{Daemon: testworld.StartDaemon(w.t, mnt, func() bool { return socketReady(mnt, args) }, args...),
		mnt: mnt, cacheDir: staging}
}

// gcsClient reads the emulator directly, past the fault proxy, through
// the same storage client jitfs uses.
func (w *world) gcsClient() *gcs.Client {
	w.t.Helper()
	c, err := gcs.New(context.Background(), gcs.Options{Bucket: testBucket, Endpoint: w.Emu.Addr()})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	return c
}

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// checkObject fails unless the live object name holds exactly want, with
// GCS's CRC32C equal to the bytes' own.
func checkObject(t *testing.T, c *gcs.Client, name string, want []byte) error {
	t.Helper()
	ctx := context.Background()
	a, err := c.Stat(ctx, name)
	if err != nil {
		return err
	}
	got := make([]byte, a.Size)
	if a.Size > 0 {
		if err := c.ReadRange(ctx, name, a.Generation, 0, got); err != nil {
			return err
		}
	}
	if string(got) != string(want) {
		return fmt.Errorf("%s: %d bytes in GCS differ from the %d written", name, len(got), len(want))
	}
	if sum := crc32.Checksum(want, castagnoliTable); !a.HasCRC32C || a.CRC32C != sum {
		return fmt.Errorf("%s: GCS CRC32C %08x, bytes %08x", name, a.CRC32C, sum)
	}
	return nil
}

// listObjects names every object under prefix.
func (w *world) listObjects(prefix string) []string {
	w.t.Helper()
	var names []string
	opts := fakestorage.ListOptions{Prefix: prefix}
	for {
		page, err := w.Emu.ListObjectsWithOptionsPaginated(testBucket, opts)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, o := range page.Objects {
			names = append(names, o.Name)
		}
		if page.NextPageToken == "" {
			break
		}
		opts.PageToken = page.NextPageToken
	}
	sort.Strings(names)
	return names
}

// writeFrame writes a frame as renderers do: a temporary file in the same
// directory, closed, then renamed over the final name.
func writeFrame(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", name, rand.Int()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 256<<10)
		if _, err := f.Write(data[off : off+n]); err != nil {
			f.Close()
			return err
		}
		off += n
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func outputStatus(t *testing.T, d *jitfsd, since uint64) *hooks.OutputStatus {
	t.Helper()
	cl := hooks.NewClient(hooks.DefaultSocket(d.mnt), 10*time.Second)
	defer cl.Close()
	st, err := cl.StatusSince(context.Background(), since)
	if err != nil {
		t.Fatal(err)
	}
	if st.Outputs == nil {
		t.Fatal("status of an output daemon has no outputs section")
	}
	return st.Outputs
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOutputRenderWriters(t *testing.T) {
	w := newWorld(t, false)
	prev := w.PutRandom("jobs/j1/out/prev/f.0001.exr", 70_000)
	d := w.outputForTest("jobs/j1/out", "")
	c := w.gcsClient()

	// What the prefix already holds is listed and readable.
	mustEqualBytes(t, "existing object", mustRead(t, d.path("prev/f.0001.exr")), prev)

	const writers, frames = 4, 12
	var mu sync.Mutex
	want := map[string][]byte{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for wr := 0; wr < writers; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := d.path(fmt.Sprintf("render/layer%d", wr))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				errs <- err
				return
			}
			for i := 1; i <= frames; i++ {
				name := fmt.Sprintf("beauty.%04d.exr", i)
				data := testworld.RandBytes(fmt.Sprintf("%d/%d", wr, i), 1000+(wr*frames+i)*37_000)
				if err := writeFrame(dir, name, data); err != nil {
					errs <- err
					return
				}
				// What was just written reads back at once, staged or not.
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(got) != string(data) {
					errs <- fmt.Errorf("read back %s: %d bytes, %v", name, len(got), err)
					return
				}
				mu.Lock()
				want[fmt.Sprintf("jobs/j1/out/render/layer%d/%s", wr, name)] = data
				mu.Unlock()
			}
		}()
	}
	// One large frame goes up in resumable chunks, through the proxy.
	big := testworld.RandBytes("big", 20<<20+12345)
	if err := writeFrame(d.path(""), "big.exr", big); err != nil {
		t.Fatal(err)
	}
	// The writers fill want under mu while this goroutine adds the big frame.
	mu.Lock()
	want["jobs/j1/out/big.exr"] = big
	mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// A re-render replaces a frame by renaming over it.
	again := testworld.RandBytes("again", 50_000)
	if err := writeFrame(d.path("render/layer0"), "beauty.0001.exr", again); err != nil {
		t.Fatal(err)
	}
	want["jobs/j1/out/render/layer0/beauty.0001.exr"] = again
	// In-place rewrite with truncation, and append.
	p := d.path("log.txt")
	if err := os.WriteFile(p, []byte("first version, long"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("second"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" + appended")
	f.Close()
	want["jobs/j1/out/log.txt"] = []byte("second + appended")
	if err := os.Truncate(d.path("render/layer1/beauty.0002.exr"), 1000); err != nil {
		t.Fatal(err)
	}
	want["jobs/j1/out/render/layer1/beauty.0002.exr"] = want["jobs/j1/out/render/layer1/beauty.0002.exr"][:1000]
	// Removing a file removes its object; an empty directory comes and goes.
	if err := os.WriteFile(d.path("scratch.tmp"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(d.path("scratch.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d.path("empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(d.path("render")); errnoOf(err) != syscall.ENOTEMPTY {
		t.Fatalf("rmdir of a full directory: %v", err)
	}
	if err := os.Remove(d.path("empty")); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(d.path("render/layer2"))
	if err != nil || len(ents) != frames {
		t.Fatalf("readdir: %d entries, %v", len(ents), err)
	}

	out, code := runJitfs(t, "flush", "--wait", "--timeout", "60s", d.mnt)
	if code != 0 || !strings.Contains(out, "every output is durable") {
		t.Fatalf("flush: exit %d\n%s", code, out)
	}
	for name, data := range want {
		if err := checkObject(t, c, name, data); err != nil {
			t.Fatal(err)
		}
	}
	// Exactly the outputs: no temporary names, no removed file.
	var wantNames []string
	for n := range want {
		wantNames = append(wantNames, n)
	}
	wantNames = append(wantNames, "jobs/j1/out/prev/f.0001.exr")
	sort.Strings(wantNames)
	if got := w.listObjects("jobs/j1/out/"); strings.Join(got, "\n") != strings.Join(wantNames, "\n") {
		t.Fatalf("objects under the prefix: extra %v, missing %v", setMinus(got, wantNames), setMinus(wantNames, got))
	}

	// Frame durable events: one per output, in sequence order, and
	// "since" returns only newer ones.
	st := outputStatus(t, d, 0)
	if st.NotDurableTotal != 0 || st.StagedBytes != 0 {
		t.Fatalf("after flush: %d not durable, %d bytes staged", st.NotDurableTotal, st.StagedBytes)
	}
	seen := map[string]bool{}
	var last uint64
	for _, ev := range st.Durable {
		if ev.Seq <= last {
			t.Fatalf("event sequence not increasing: %d after %d", ev.Seq, last)
		}
		last = ev.Seq
		seen[strings.TrimPrefix(ev.Object, "gs://"+testBucket+"/")] = true
		if ev.DurableAt < ev.ClosedAt || len(ev.CRC32C) != 8 {
			t.Fatalf("bad event %+v", ev)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Fatalf("no durable event for %s", name)
		}
	}
	if st.LastDurableSeq != last {
		t.Fatalf("last_durable_seq %d, last event %d", st.LastDurableSeq, last)
	}
	if later := outputStatus(t, d, last); len(later.Durable) != 0 {
		t.Fatalf("durable_since=%d returned %d events", last, len(later.Durable))
	}
	if n := strings.Count(d.Log.String(), "msg=\"output durable\""); n < len(want) {
		t.Fatalf("%d durable log lines for %d outputs", n, len(want))
	}
	// The scene side is untouched: prefetching against an output area is refused clearly.
	out, code = runJitfs(t, "prefetch", "--socket", hooks.DefaultSocket(d.mnt), d.path("big.exr"))
	if code == 0 || !strings.Contains(out, "no_prefetch") {
		t.Fatalf("prefetch on an output area: %d %s", code, out)
	}
}

// TestOutputKillRestartCycles SIGKILLs the daemon while renderers write
// and while uploads are in flight, restarts it on the same staging
// directory, and counts outputs lost.
func TestOutputKillRestartCycles(t *testing.T) {
	cycles := 5
	if s := os.Getenv("JITFS_KILL_CYCLES"); s != "" {
		fmt.Sscan(s, &cycles)
	}
	w := newWorld(t, false)
	// Uploads take a while, so kills land during them.
	w.Proxy.StallUploads.Store(int64(40 * time.Millisecond))
	staging := filepath.Join(t.TempDir(), "staging")
	d := w.outputForTest("jobs/k/out", staging)
	c := w.gcsClient()

	closed := map[string][]byte{} // every frame whose write, close and rename returned success
	var leftOpen []string
	var mu sync.Mutex
	for cycle := 0; cycle < cycles; cycle++ {
		if cycle > 0 {
			d.Start()
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for wr := 0; wr < 3; wr++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dir := d.path(fmt.Sprintf("c%d/w%d", cycle, wr))
				if os.MkdirAll(dir, 0o755) != nil {
					return
				}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("f.%04d.exr", i)
					data := testworld.RandBytes(fmt.Sprintf("%d/%d/%d", cycle, wr, i), 50_000+rand.IntN(1_500_000))
					if writeFrame(dir, name, data) != nil {
						return
					}
					mu.Lock()
					closed[fmt.Sprintf("jobs/k/out/c%d/w%d/%s", cycle, wr, name)] = data
					mu.Unlock()
				}
			}()
		}
		// A frame being written straight to its final name, never closed.
		open := fmt.Sprintf("c%d/open.exr", cycle)
		os.MkdirAll(d.path(fmt.Sprintf("c%d", cycle)), 0o755)
		of, err := os.Create(d.path(open))
		if err != nil {
			t.Fatal(err)
		}
		of.Write(testworld.RandBytes(open, 300_000))
		leftOpen = append(leftOpen, open)
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		d.Kill()
		close(stop)
		wg.Wait()
		of.Close()
	}
	d.Start()
	// Everything closed is durable after a restart; what was open is
	// reported as interrupted, not uploaded.
	out, code := runJitfs(t, "flush", "--wait", "--timeout", "120s", d.mnt)
	if code != exitNotDurable {
		t.Fatalf("flush with interrupted files: exit %d\n%s", code, out)
	}
	st := outputStatus(t, d, 0)
	interrupted := map[string]bool{}
	for _, f := range st.NotDurable {
		if f.State != "interrupted" {
			t.Fatalf("after flush, %s is %s (want only interrupted files)\n%s", f.Path, f.State, out)
		}
		interrupted[strings.TrimPrefix(f.Path, d.mnt+"/")] = true
	}
	for _, p := range leftOpen {
		if !interrupted[p] {
			t.Fatalf("%s was open when the daemon died but is not reported interrupted: %v\nlast daemon's log:\n%s", p, interrupted, d.Log)
		}
		if _, err := c.Stat(context.Background(), "jobs/k/out/"+p); !errors.Is(err, gcs.ErrNotFound) {
			t.Fatalf("%s was open when the daemon died but reached GCS: %v", p, err)
		}
	}
	// A re-run clears them through the mount.
	for p := range interrupted {
		if err := os.Remove(d.path(p)); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := runJitfs(t, "flush", "--wait", "--timeout", "60s", d.mnt); code != 0 {
		t.Fatalf("flush after removing interrupted files: exit %d\n%s", code, out)
	}
	lost := 0
	for name, data := range closed {
		if err := checkObject(t, c, name, data); err != nil {
			lost++
			t.Errorf("lost: %v", err)
		}
	}
	t.Logf("kill/restart cycles: %d, outputs closed: %d, interrupted (open at kill): %d, lost: %d",
		cycles, len(closed), len(interrupted), lost)
	if len(closed) < cycles {
		t.Fatalf("only %d frames were closed in %d cycles: the test did not exercise much", len(closed), cycles)
	}
}

func TestOutputUploadFailures(t *testing.T) {
	w := newWorld(t, false)
	staging := filepath.Join(t.TempDir(), "staging")
	d := w.outputForTest("jobs/f", staging, "--upload-workers", "2")
	c := w.gcsClient()

	// Uploads fail (503) until one is seen retrying, then GCS recovers.
	// The outage ends on that condition, not after a fixed time a loaded
	// machine could spend writing the frames.
	w.Proxy.UploadOutage.Store(true)
	want := map[string][]byte{}
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("f%d.exr", i)
		want[name] = testworld.RandBytes(name, 200_000+i)
		if err := writeFrame(d.path(""), name, want[name]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "an upload to be retrying", 2*time.Minute, func() bool { return outputStatus(t, d, 0).Files["retrying"] > 0 })
	w.Proxy.UploadOutage.Store(false)
	out, code := runJitfs(t, "flush", "--wait", "--timeout", "60s", d.mnt)
	if code != 0 {
		t.Fatalf("flush after a transient outage: exit %d\n%s", code, out)
	}
	for name, data := range want {
		if err := checkObject(t, c, "jobs/f/"+name, data); err != nil {
			t.Fatal(err)
		}
	}
	if st := outputStatus(t, d, 0); st.Retries == 0 {
		t.Fatal("no retries counted during the outage")
	}

	// A permanent failure (403) leaves the file staged and reported.
	w.Proxy.UploadFailCode.Store(403)
	w.Proxy.UploadOutage.Store(true)
	perm := testworld.RandBytes("perm", 123_456)
	if err := writeFrame(d.path(""), "perm.exr", perm); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the upload to fail", 2*time.Minute, func() bool { return outputStatus(t, d, 0).Files["failed"] == 1 })
	start := time.Now()
	// A flush that waited for the failure to progress would run to its
	// --timeout; one that reports it at once ends long before.
	out, code = runJitfs(t, "flush", "--wait", "--timeout", "10m", d.mnt)
	if code != exitNotDurable || !strings.Contains(out, "failed") || !strings.Contains(out, d.path("perm.exr")) {
		t.Fatalf("flush with a failed upload: exit %d\n%s", code, out)
	}
	if time.Since(start) > 5*time.Minute {
		t.Fatalf("flush waited %v for a failure that cannot progress", time.Since(start))
	}
	if !strings.Contains(d.Log.String(), "upload failed permanently") {
		t.Fatalf("no log line for the permanent failure\n%s", d.Log)
	}
	// A restart does not drop it either.
	d.Restart()
	mustEqualBytes(t, "staged after restart", mustRead(t, d.path("perm.exr")), perm)
	waitFor(t, "the upload to fail again", 2*time.Minute, func() bool { return outputStatus(t, d, 0).Files["failed"] == 1 })
	// Fixed: retry.
	w.Proxy.UploadOutage.Store(false)
	out, code = runJitfs(t, "flush", "--wait", "--retry-failed", "--timeout", "60s", d.mnt)
	if code != 0 {
		t.Fatalf("flush --retry-failed after the fix: exit %d\n%s", code, out)
	}
	if err := checkObject(t, c, "jobs/f/perm.exr", perm); err != nil {
		t.Fatal(err)
	}
}

func TestOutputStagingFull(t *testing.T) {
	w := newWorld(t, false)
	// A staging wait with room for a loaded machine: once GCS is back, a
	// waiting writer wakes the uploader at once (output's
	// TestWaitingWriterCutsUploadBackoff), so only load stretches it.
	d := w.outputForTest("jobs/s", "", "--staging-size", "4MiB", "--staging-wait", "5s")
	c := w.gcsClient()
	w.Proxy.UploadOutage.Store(true) // 503: uploads retry, staging stays full
	a := testworld.RandBytes("a", 3<<20)
	if err := writeFrame(d.path(""), "a.exr", a); err != nil {
		t.Fatal(err)
	}
	// The next frame does not fit: the writer waits, then gets ENOSPC.
	b := testworld.RandBytes("b", 3<<20)
	start := time.Now()
	err := os.WriteFile(d.path("b.exr"), b, 0o644)
	if errnoOf(err) != syscall.ENOSPC {
		t.Fatalf("write past the staging budget: %v", err)
	}
	if el := time.Since(start); el < 4900*time.Millisecond {
		t.Fatalf("ENOSPC after %v, before the staging wait", el)
	}
	if n := strings.Count(d.Log.String(), "staging full"); n != 1 {
		t.Fatalf("%d 'staging full' log lines for one failed write\n%s", n, d.Log)
	}
	// The renderer removes its partial file; a writer that blocks gets
	// through once an upload frees space.
	if err := os.Remove(d.path("b.exr")); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(500*time.Millisecond, func() { w.Proxy.UploadOutage.Store(false) })
	cc := testworld.RandBytes("c", 3<<20)
	start = time.Now()
	if err := writeFrame(d.path(""), "c.exr", cc); err != nil {
		t.Fatalf("write once uploads free space: %v", err)
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("the writer did not wait for space (%v)", el)
	}
	if out, code := runJitfs(t, "flush", "--wait", "--timeout", "60s", d.mnt); code != 0 {
		t.Fatalf("flush: exit %d\n%s", code, out)
	}
	for name, data := range map[string][]byte{"a.exr": a, "c.exr": cc} {
		if err := checkObject(t, c, "jobs/s/"+name, data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Stat(context.Background(), "jobs/s/b.exr"); !errors.Is(err, gcs.ErrNotFound) {
		t.Fatalf("removed partial frame in GCS: %v", err)
	}
}

func TestOutputBadInput(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("jobs/x/seed", 1)
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	os.MkdirAll(ro, 0o500)
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"output", "s3://x", dir}, 2, "not a gs://"},
		{[]string{"output", "gs://" + testBucket + "/jobs/x", filepath.Join(dir, "missing"), "--endpoint", w.Proxy.Addr()}, 1, "does not exist"},
		{[]string{"output", "gs://no-such-bucket/x", dir, "--endpoint", w.Proxy.Addr(), "--staging-dir", filepath.Join(dir, "s")}, 1, "bucket not found"},
		{[]string{"output", "gs://" + testBucket + "/jobs/x", dir, "--endpoint", w.Proxy.Addr(), "--staging-dir", filepath.Join(dir, "file", "s")}, 1, "staging"},
		{[]string{"output", "gs://" + testBucket + "/jobs/x", dir, "--staging-size", "lots"}, 2, "invalid size"},
		{[]string{"flush", filepath.Join(dir, "nothing-here")}, exitSetup, "no jitfs daemon socket"},
		{[]string{"flush"}, 2, "MOUNT"},
	} {
		out, code := runJitfs(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) || !oneLine(out) {
			t.Errorf("jitfs %s: exit %d, want %d with %q in one line:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	// A staging directory belongs to one prefix.
	staging := filepath.Join(dir, "st")
	d := w.outputForTest("jobs/x", staging)
	d.Stop()
	out, code := runJitfs(t, "output", "gs://"+testBucket+"/jobs/other", dir, "--endpoint", w.Proxy.Addr(), "--staging-dir", staging)
	if code != 1 || !strings.Contains(out, "another output area") {
		t.Fatalf("staging dir of another prefix: exit %d\n%s", code, out)
	}
}

func setMinus(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}
