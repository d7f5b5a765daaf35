package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
)

// TestMain lets tests re-execute this binary as the jitfs command (see
// testworld.Main).
func TestMain(m *testing.M) {
	// The child runs by its argv[0] as the binary does: as mount.fuse.jitfs
	// (a link to the test binary) it is the mount helper.
	testworld.Main(m, func([]string) int { return entry(os.Args, os.Stdout, os.Stderr) })
}

const testBucket = "show-bucket"

// world is testworld's emulator and fault proxy, with the jitfs commands'
// ways of serving it.
type world struct {
	*testworld.World
	t *testing.T
}

func newWorld(t *testing.T, versioning bool) *world {
	t.Helper()
	return &world{World: testworld.New(t, testworld.Options{Bucket: testBucket, Versioning: versioning}), t: t}
}

// jitfsd is a `jitfs mount` or `jitfs output` process.
type jitfsd struct {
	*testworld.Daemon
	mnt      string
	cacheDir string // the cache of a mount, the staging directory of an output area
}

// mountForTest starts `jitfs mount` against the world's proxy and waits
// until the mount is live. Cleanup stops it and checks it unmounted.
func (w *world) mountForTest(prefix, cacheDir string, extra ...string) *jitfsd {
	w.t.Helper()
	mnt := filepath.Join(w.t.TempDir(), "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if cacheDir == "" {
		cacheDir = filepath.Join(w.t.TempDir(), "cache")
	}
	args := append([]string{"mount", "gs://" + testBucket + "/" + prefix, mnt, "--cache-dir", cacheDir,
		"--endpoint", w.Proxy.Addr(), "--cache-size", "1GiB"}, extra...)
	return &jitfsd{Daemon: testworld.StartDaemon(w.t, mnt, func() bool { return socketReady(mnt, args) }, args...),
		mnt: mnt, cacheDir: cacheDir}
}

// socketReady: the daemon's default hook socket, which is bound just
// after the mount goes live, exists (or the daemon was given its own
// socket, which the test waits for itself).
func socketReady(mnt string, args []string) bool {
	for _, a := range args {
		if a == "--socket" || strings.HasPrefix(a, "--socket=") {
			return true
		}
	}
	// A killed daemon leaves its socket file behind: only a live one answers.
	c, err := net.DialTimeout("unix", hooks.DefaultSocket(mnt), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (d *jitfsd) path(rel string) string { return filepath.Join(d.mnt, rel) }

// runJitfs runs the jitfs command to completion.
// startChild starts cmd (a jitfs command as a child process) and kills it
// at the end of the test if it is still running.
func startChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
}

func runJitfs(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := testworld.Command(context.Background(), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func mustEqualBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: content differs (got %d bytes, want %d; first difference at %d)", what, len(got), len(want), i)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func oneLine(s string) bool { return strings.Count(strings.TrimSpace(s), "\n") == 0 }
