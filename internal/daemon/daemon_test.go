package daemon_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/jitfs/jitfs/internal/testworld"
)

func mountpoint(t *testing.T) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// TestSceneServesAndCloses: a scene mount with its hook API serves the
// bucket's bytes, refuses a second mount on its mountpoint, and Close
// leaves a plain directory (and is idempotent).
func TestSceneServesAndCloses(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	want := w.PutRandom("show/tex/a.tx", 300_001)
	mnt := mountpoint(t)
	cfg := daemon.SceneConfig{Bucket: w.Bucket, Prefix: "show/", Mountpoint: mnt, GCS: w.GCS,
		CacheDir: filepath.Join(t.TempDir(), "cache"), CacheSize: 1 << 30, Socket: filepath.Join(t.TempDir(), "hooks.sock")}
	s, err := daemon.StartScene(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Engine == nil || s.Hooks == nil || s.Hooks.SocketPath() != cfg.Socket {
		t.Fatalf("engine %v, hook API %v: want both, the hook API at %s", s.Engine, s.Hooks, cfg.Socket)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "tex/a.tx"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the mount: %d bytes, %v; want the object's %d", len(got), err, len(want))
	}
	cfg.CacheDir = filepath.Join(t.TempDir(), "cache2")
	if _, err := daemon.StartScene(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("a second mount on a busy mountpoint: %v, want a busy error", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if ok, err := mountinfo.Mounted(s.Config.Mountpoint); err != nil || ok {
		t.Fatalf("still mounted after Close (%v)", err)
	}
	if _, err := w.GCS.Stat(context.Background(), "show/tex/a.tx"); err != nil {
		t.Fatalf("Close closed the caller's client: %v", err)
	}
}

// TestStartSceneFailsCleanly: a bad trace path fails the start before
// anything is mounted.
func TestStartSceneFailsCleanly(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	mnt := mountpoint(t)
	_, err := daemon.StartScene(context.Background(), daemon.SceneConfig{Bucket: w.Bucket, Mountpoint: mnt, GCS: w.GCS,
		CacheDir: t.TempDir(), CacheSize: 1 << 30, Socket: "none", TraceFile: "/nonexistent/dir/t.zst"})
	if err == nil || !strings.Contains(err.Error(), "trace") {
		t.Fatalf("err = %v, want a trace error", err)
	}
	if ok, _ := mountinfo.Mounted(mnt); ok {
		t.Fatal("mounted despite a bad trace path")
	}
}

// TestOutputUploadsClosedFiles: a file written to an output area is
// uploaded once closed, and Close unmounts.
func TestOutputUploadsClosedFiles(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	mnt := mountpoint(t)
	o, err := daemon.StartOutput(context.Background(), daemon.OutputConfig{Bucket: w.Bucket, Prefix: "jobs/1/", Mountpoint: mnt,
		Endpoint: w.Proxy.Addr(), StagingDir: filepath.Join(t.TempDir(), "staging"), StagingSize: 1 << 30, UploadDelay: -1, Socket: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	want := testworld.RandBytes("frame", 100_000)
	if err := os.WriteFile(filepath.Join(mnt, "frame.0001.exr"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res := o.Area.Flush(ctx, false); !res.Durable {
		t.Fatalf("not durable: %+v", res.NotDurable)
	}
	if a := w.Stat(t, "jobs/1/frame.0001.exr"); a.Size != int64(len(want)) {
		t.Fatalf("uploaded %d bytes, want %d", a.Size, len(want))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := mountinfo.Mounted(o.Config.Mountpoint); ok {
		t.Fatal("still mounted after Close")
	}
}
