package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/faultproxy"
)

// TestMain lets tests re-execute this binary as the jitfs command, so the
// FUSE server runs in a separate process from the programs that read the
// mount (as in production, and free of go-fuse's in-process deadlocks).
func TestMain(m *testing.M) {
	if os.Getenv("JITFS_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const testBucket = "show-bucket"

// world is an emulator behind a fault proxy.
type world struct {
	t     *testing.T
	emu   *emulator.Server
	proxy *faultproxy.Proxy
}

func newWorld(t *testing.T, versioning bool) *world {
	t.Helper()
	emu, err := emulator.Start(emulator.Options{Bucket: testBucket, Versioning: versioning})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Stop)
	p, err := faultproxy.Start(emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &world{t: t, emu: emu, proxy: p}
}

// put stores deterministic pseudo-random content and returns it.
func (w *world) put(name string, size int) []byte {
	b := randBytes(name, size)
	w.emu.Put(testBucket, name, b)
	return b
}

func randBytes(seed string, size int) []byte {
	r := rand.New(rand.NewPCG(uint64(len(seed))*7919, uint64(size)))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) / 8 * 8; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is a `jitfs mount` process.
type daemon struct {
	t        *testing.T
	cmd      *exec.Cmd
	mnt      string
	cacheDir string
	args     []string
	stderr   *syncBuffer
	exited   chan struct{}
}

// mountForTest starts `jitfs mount` against the world's proxy and waits
// until the mount is live. Cleanup stops it and checks it unmounted.
func (w *world) mountForTest(prefix, cacheDir string, extra ...string) *daemon {
	w.t.Helper()
	mnt := filepath.Join(w.t.TempDir(), "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if cacheDir == "" {
		cacheDir = filepath.Join(w.t.TempDir(), "cache")
	}
	args := append([]string{"mount", "gs://" + testBucket + "/" + prefix, mnt, "--cache-dir", cacheDir,
		"--endpoint", w.proxy.Addr(), "--cache-size", "1GiB"}, extra...)
	d := &daemon{t: w.t, mnt: mnt, cacheDir: cacheDir, args: args}
	d.start()
	w.t.Cleanup(d.stop)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.stderr = &syncBuffer{}
	d.cmd = exec.Command(os.Args[0], d.args...)
	d.cmd.Env = append(os.Environ(), "JITFS_TEST_MAIN=1")
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A dead mount left by a killed daemon is in mountinfo too: wait
		// until the root answers.
		if ok, _ := isMountpoint(d.mnt); ok {
			var sfs syscall.Statfs_t
			if syscall.Statfs(d.mnt, &sfs) == nil && d.socketReady() {
				return
			}
		}
		select {
		case <-d.exited:
			d.t.Fatalf("jitfs mount exited early: %v\n%s", d.cmd.ProcessState, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("mount did not appear within 30s\n%s", d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// socketReady: the daemon's default hook socket, which is bound just
// after the mount goes live, exists (or the daemon was given its own
// socket, which the test waits for itself).
func (d *daemon) socketReady() bool {
	for _, a := range d.args {
		if a == "--socket" || strings.HasPrefix(a, "--socket=") {
			return true
		}
	}
	// A killed daemon leaves its socket file behind: only a live one answers.
	c, err := net.DialTimeout("unix", hooks.DefaultSocket(d.mnt), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// stop sends SIGTERM and waits for a clean unmount.
func (d *daemon) stop() {
	d.t.Helper()
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("daemon did not exit on SIGTERM\n%s", d.stderr)
	}
	if ok, _ := isMountpoint(d.mnt); ok {
		syscall.Unmount(d.mnt, syscall.MNT_DETACH)
		d.t.Errorf("mount still present after the daemon exited")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("daemon exited with %d\n%s", code, d.stderr)
	}
}

// kill SIGKILLs the daemon, leaving a dead mount behind as a crash would.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

// restart starts a new daemon with the same arguments (same cache).
func (d *daemon) restart() {
	d.t.Helper()
	select {
	case <-d.exited:
	default:
		d.stop()
	}
	d.start()
}

func (d *daemon) path(rel string) string { return filepath.Join(d.mnt, rel) }

// dropPageCache drops the kernel's cached pages of a file in the mount, so
// the next read reaches the daemon.
func dropPageCache(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// runJitfs runs the jitfs command to completion.
func runJitfs(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "JITFS_TEST_MAIN=1")
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

var _ = fmt.Sprintf
