package output_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/output"
)

// stagingTmpfs mounts a small tmpfs (the tests run as root) to stage on: a
// disk that really fills.
func stagingTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

func notDurable(res output.FlushResult, rel string) *output.FileState {
	for i := range res.NotDurable {
		if res.NotDurable[i].Path == rel {
			return &res.NotDurable[i]
		}
	}
	return nil
}

// TestCutShortFileIsNotUploaded: a renderer's write fails with ENOSPC (the
// staging budget is full and GCS is down) and it closes its file anyway.
// The partial file is not uploaded, survives a restart as cut short, and
// is uploaded once it is written again in full.
func TestCutShortFileIsNotUploaded(t *testing.T) {
	w := testworld.New(t, testworld.Options{Bucket: "b", Client: gcs.Options{InitialBackoff: time.Millisecond}})
	w.Put("seed", []byte("x"))
	staging := filepath.Join(t.TempDir(), "staging")
	opts := output.Options{Remote: w.GCS, Bucket: w.Bucket, Prefix: "out/", StagingDir: staging,
		StagingBytes: 4 << 20, SpaceWait: 100 * time.Millisecond, UploadDelay: -1,
		InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	a, err := output.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Proxy.UploadOutage.Store(true)
	write(t, a, "f.0001.exr", testworld.RandBytes("f1", 3<<20), true)
	ctx := context.Background()
	h, err := a.Open(ctx, ".f.0002.exr.tmp", output.OpenFlags{Write: true, Create: true, Truncate: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, testworld.RandBytes("head", 512<<10), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, testworld.RandBytes("rest", 1<<20), 512<<10); !errors.Is(err, output.ErrNoSpace) {
		t.Fatalf("write past the staging budget: %v, want ErrNoSpace", err)
	}
	if err := h.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	w.Proxy.UploadOutage.Store(false)
	res := a.Flush(ctx, false)
	fs := notDurable(res, ".f.0002.exr.tmp")
	if res.Durable || fs == nil || fs.State != output.StateCutShort || len(res.NotDurable) != 1 {
		t.Fatalf("flush after the outage: %+v; want only the cut-short file not durable", res)
	}
	if _, err := w.GCS.Stat(ctx, "out/.f.0002.exr.tmp"); !errors.Is(err, gcs.ErrNotFound) {
		t.Fatalf("the cut-short file reached GCS: %v", err)
	}

	// A restart keeps it staged and cut short.
	a.Close()
	if a, err = output.New(opts); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if fs := notDurable(a.Flush(ctx, false), ".f.0002.exr.tmp"); fs == nil || fs.State != output.StateCutShort {
		t.Fatalf("after a restart: %+v, want cut_short", fs)
	}
	// Written again in full, it goes up.
	full := testworld.RandBytes("full", 1536<<10)
	write(t, a, ".f.0002.exr.tmp", full, true)
	if res := a.Flush(ctx, false); !res.Durable {
		t.Fatalf("after a full rewrite: %+v", res)
	}
	if st := w.Stat(t, "out/.f.0002.exr.tmp"); st.Size != int64(len(full)) || st.Metadata[output.MetaCutShort] != "" {
		t.Fatalf("uploaded %+v", st)
	}
}

// TestUploadCutShortUploadsMarked: with UploadCutShort the partial file is
// uploaded, marked jitfs-cut-short=true.
func TestUploadCutShortUploadsMarked(t *testing.T) {
	w := testworld.New(t, testworld.Options{Bucket: "b"})
	w.Put("seed", []byte("x"))
	a, err := output.New(output.Options{Remote: w.GCS, Bucket: w.Bucket, Prefix: "out/", StagingDir: filepath.Join(t.TempDir(), "s"),
		StagingBytes: 1 << 20, SpaceWait: 50 * time.Millisecond, UploadDelay: -1, UploadCutShort: true,
		InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	h, err := a.Open(ctx, "log.txt", output.OpenFlags{Write: true, Create: true, Truncate: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, testworld.RandBytes("big", 2<<20), 0); !errors.Is(err, output.ErrNoSpace) {
		t.Fatalf("write past the budget: %v", err)
	}
	if _, err := h.WriteAt(ctx, []byte("tail\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if res := a.Flush(ctx, false); !res.Durable {
		t.Fatalf("flush: %+v", res)
	}
	if st := w.Stat(t, "out/log.txt"); st.Size != 5 || st.Metadata[output.MetaCutShort] != "true" {
		t.Fatalf("uploaded %+v, want 5 bytes marked cut short", st)
	}
}

// TestFullStagingDiskWaitsForUploads: the disk under the staging directory
// fills before the budget does. A writer the disk refuses waits for
// uploads to free space, as for the budget, and its write then succeeds.
func TestFullStagingDiskWaitsForUploads(t *testing.T) {
	w := testworld.New(t, testworld.Options{Bucket: "b", Client: gcs.Options{InitialBackoff: time.Millisecond}})
	w.Put("seed", []byte("x"))
	disk := stagingTmpfs(t, "4m")
	a, err := output.New(output.Options{Remote: w.GCS, Bucket: w.Bucket, Prefix: "out/", StagingDir: filepath.Join(disk, "s"),
		StagingBytes: 1 << 30, SpaceWait: 10 * time.Minute, UploadDelay: -1,
		InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w.Proxy.UploadOutage.Store(true)
	write(t, a, "f.0001.exr", testworld.RandBytes("f1", 3<<20), true)
	ctx := context.Background()
	second := testworld.RandBytes("f2", 2<<20)
	done := make(chan error, 1)
	go func() {
		h, err := a.Open(ctx, "f.0002.exr", output.OpenFlags{Write: true, Create: true, Truncate: true, Mode: 0o644})
		if err == nil {
			_, err = h.WriteAt(ctx, second, 0)
			err = errors.Join(err, h.Release())
		}
		done <- err
	}()
	// The writer has filled the disk and waits.
	for freeBytes(t, disk) > 0 {
		select {
		case err := <-done:
			t.Fatalf("the write returned before the disk was full: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	w.Proxy.UploadOutage.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("a write the full disk refused, after uploads freed space: %v", err)
	}
	if res := a.Flush(ctx, false); !res.Durable {
		t.Fatalf("flush: %+v", res)
	}
	if st := w.Stat(t, "out/f.0002.exr"); st.Size != int64(len(second)) || st.Metadata[output.MetaCutShort] != "" {
		t.Fatalf("uploaded %+v", st)
	}
}

// TestUnjournalledCloseReachesAnEnd: the staging disk is full when a file
// is closed, so its close cannot be journalled. The file is reported
// failed at once (a flush does not wait for it), and a flush with
// retryFailed journals it once there is room.
func TestUnjournalledCloseReachesAnEnd(t *testing.T) {
	w := testworld.New(t, testworld.Options{Bucket: "b"})
	w.Put("seed", []byte("x"))
	disk := stagingTmpfs(t, "2m")
	a, err := output.New(output.Options{Remote: w.GCS, Bucket: w.Bucket, Prefix: "out/", StagingDir: filepath.Join(disk, "s"),
		StagingBytes: 1 << 30, SpaceWait: 50 * time.Millisecond, UploadDelay: -1,
		InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	h, err := a.Open(ctx, "f.exr", output.OpenFlags{Write: true, Create: true, Truncate: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("frame bytes"), 0); err != nil {
		t.Fatal(err)
	}
	// Someone else fills the disk.
	filler, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 4096))
	}
	filler.Close()
	if err := h.Release(); err == nil {
		t.Fatal("the close was journalled on a full disk; the test checks nothing")
	}
	res := a.Flush(ctx, false) // must return: nothing can move
	fs := notDurable(res, "f.exr")
	if res.Durable || fs == nil || fs.State != output.StateFailed || !strings.Contains(fs.Error, "journalled") {
		t.Fatalf("flush with an unjournalled close: %+v", res)
	}
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	if res := a.Flush(ctx, true); !res.Durable {
		t.Fatalf("flush --retry-failed once the disk has room: %+v", res)
	}
	if got := w.Stat(t, "out/f.exr"); got.Size != int64(len("frame bytes")) {
		t.Fatalf("uploaded %+v", got)
	}
}
