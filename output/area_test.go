package output_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/output"
)

func newArea(t *testing.T, w *testworld.World, staging string) *output.Area {
	t.Helper()
	a, err := output.New(output.Options{Remote: w.GCS, Bucket: w.Bucket, Prefix: "out/", StagingDir: staging,
		UploadDelay: -1, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func write(t *testing.T, a *output.Area, rel string, data []byte, close bool) *output.Handle {
	t.Helper()
	ctx := context.Background()
	h, err := a.Open(ctx, rel, output.OpenFlags{Write: true, Create: true, Truncate: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if close {
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := h.Release(); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// TestRecoveryAfterCrash stops an area the way a killed daemon stops (no
// commit of open files, uploads cut off) and checks what the next one does
// with the staging directory.
func TestRecoveryAfterCrash(t *testing.T) {
	w := testworld.New(t, testworld.Options{Bucket: "b", Client: gcs.Options{InitialBackoff: time.Millisecond}})
	w.Put("seed", []byte("x"))
	staging := filepath.Join(t.TempDir(), "staging")
	a := newArea(t, w, staging)

	w.Proxy.UploadOutage.Store(true) // nothing reaches GCS before the "crash"
	if err := a.Mkdir(context.Background(), "shot"); err != nil {
		t.Fatal(err)
	}
	closed := testworld.RandBytes("closed", 300_000)
	write(t, a, "shot/closed.exr", closed, true)
	write(t, a, "shot/open.exr", testworld.RandBytes("open", 1000), false)
	a.Close()
	// An orphan: data whose record is gone.
	os.WriteFile(filepath.Join(staging, "data", "999"), []byte("orphan"), 0o600)

	w.Proxy.UploadOutage.Store(false)
	a = newArea(t, w, staging)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := a.Flush(ctx, false)
	if res.Durable || len(res.NotDurable) != 1 || res.NotDurable[0].Path != "shot/open.exr" || res.NotDurable[0].State != output.StateInterrupted {
		t.Fatalf("after recovery: %+v", res)
	}
	if st := w.Stat(t, "out/shot/closed.exr"); st.Size != int64(len(closed)) {
		t.Fatalf("closed file not resumed: %+v", st)
	}
	if _, err := w.GCS.Stat(ctx, "out/shot/open.exr"); !errors.Is(err, gcs.ErrNotFound) {
		t.Fatalf("an open file was uploaded: %v", err)
	}
	if _, err := os.Stat(filepath.Join(staging, "data", "999")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan data kept: %v", err)
	}
	// The interrupted file is readable and can be overwritten.
	info, err := a.Stat(ctx, "shot/open.exr")
	if err != nil || info.State != output.StateInterrupted || info.Size != 1000 {
		t.Fatalf("interrupted file: %+v %v", info, err)
	}
	again := testworld.RandBytes("again", 2000)
	write(t, a, "shot/open.exr", again, true)
	if res := a.Flush(ctx, false); !res.Durable {
		t.Fatalf("after overwriting: %+v", res)
	}
	if st := w.Stat(t, "out/shot/open.exr"); st.Size != 2000 {
		t.Fatalf("overwritten file: %+v", st)
	}
	// A second daemon on the same staging directory is refused.
	if _, err := output.New(output.Options{Remote: w.GCS, Bucket: "b", Prefix: "out/", StagingDir: staging}); !errors.Is(err, output.ErrStagingBusy) {
		t.Fatalf("second daemon: %v", err)
	}
}

// TestWaitingWriterCutsUploadBackoff: when GCS comes back, a writer
// waiting for staging space gets it promptly, even though the uploader's
// backoff grew during the outage (here a first backoff of a minute, longer
// than the writer's wait: without the wake-up the write would fail with
// ENOSPC).
func TestWaitingWriterCutsUploadBackoff(t *testing.T) {
	w := testworld.New(t, testworld.Options{Bucket: "b", Client: gcs.Options{InitialBackoff: time.Millisecond}})
	w.Put("seed", []byte("x"))
	a, err := output.New(output.Options{Remote: w.GCS, Bucket: w.Bucket, Prefix: "out/", StagingDir: filepath.Join(t.TempDir(), "staging"),
		StagingBytes: 4 << 20, SpaceWait: 20 * time.Second, UploadDelay: -1,
		InitialBackoff: time.Minute, MaxBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w.Proxy.UploadOutage.Store(true)
	first := testworld.RandBytes("a", 3<<20)
	write(t, a, "a.exr", first, true)
	// Wait for the first failed attempt: the uploader now sleeps 30–90 s.
	for a.Status(0).Retries == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	w.Proxy.UploadOutage.Store(false)
	ctx := context.Background()
	h, err := a.Open(ctx, "b.exr", output.OpenFlags{Write: true, Create: true, Truncate: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, testworld.RandBytes("b", 3<<20), 0); err != nil {
		t.Fatalf("write while the uploader sat in a long backoff after GCS came back: %v", err)
	}
	if err := h.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stat(t, "out/a.exr"); st.Size != int64(len(first)) {
		t.Fatalf("a.exr: %+v", st)
	}
}
