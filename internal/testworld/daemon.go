package testworld

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/mountinfo"
)

// childEnv marks a process that Main runs as a child, not as the tests.
const childEnv = "JITFS_TEST_MAIN"

// fuseMagic is FUSE_SUPER_MAGIC, statfs's type of a live FUSE mount.
const fuseMagic = 0x65735546

// Main is TestMain for a package whose tests start daemons: in a process
// started by Command or StartDaemon it runs child with the process's
// arguments and exits with its status; otherwise it runs the tests. The
// daemon is the test binary itself, so no test or benchmark needs a Go
// toolchain to build one, and it serves its mount from another process
// than the programs reading it (as in production, and free of go-fuse's
// in-process deadlocks).
func Main(m *testing.M, child func(args []string) int) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// Command returns the test binary re-executed as Main's child with args;
// ctx kills it, as in exec.CommandContext.
func Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// Buffer collects a child's output while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Daemon is a child (see Main) serving a FUSE mount at Mountpoint.
type Daemon struct {
	Mountpoint string
	Args       []string
	// Log is the child's output (stdout and stderr) since its last start.
	Log *Buffer

	t      testing.TB
	ready  func() bool
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartDaemon starts a child with args that mounts at mountpoint and waits
// until the mount answers and ready (nil: always) reports true. The test's
// Cleanup stops it. A node daemon mounts nothing at start: its mountpoint
// is "" and ready says when it serves.
func StartDaemon(t testing.TB, mountpoint string, ready func() bool, args ...string) *Daemon {
	t.Helper()
	d := &Daemon{t: t, Mountpoint: mountpoint, Args: args, ready: ready}
	d.Start()
	t.Cleanup(d.Stop)
	return d
}

// Start starts the child again (after Kill or Stop) with the same
// arguments, and waits as StartDaemon does.
func (d *Daemon) Start() {
	d.t.Helper()
	d.Log = &Buffer{}
	d.cmd = Command(context.Background(), d.Args...)
	d.cmd.Stdout, d.cmd.Stderr = d.Log, d.Log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for (d.Mountpoint != "" && !d.live()) || (d.ready != nil && !d.ready()) {
		select {
		case <-d.exited:
			d.t.Fatalf("daemon exited early: %v\n%s", d.cmd.ProcessState, d.Log)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("mount did not appear within 30s\n%s", d.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// live reports a FUSE mount at the mountpoint whose root answers: a dead
// mount left by a killed daemon fails statfs, and before the mount is up
// statfs sees the directory's own filesystem.
func (d *Daemon) live() bool {
	var sfs syscall.Statfs_t
	return syscall.Statfs(d.Mountpoint, &sfs) == nil && sfs.Type == fuseMagic
}

// Pid is the running child's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop sends SIGTERM, waits for the child to exit, and fails the test
// unless it exited 0 within 30s and left nothing mounted.
func (d *Daemon) Stop() {
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
		d.t.Errorf("daemon did not exit on SIGTERM\n%s", d.Log)
	}
	if ok, _ := mountinfo.Mounted(d.Mountpoint); ok && d.Mountpoint != "" {
		syscall.Unmount(d.Mountpoint, syscall.MNT_DETACH)
		d.t.Errorf("mount still present after the daemon exited")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Errorf("daemon exited with %d\n%s", code, d.Log)
	}
}

// Kill SIGKILLs the child, leaving a dead mount behind as a crash would.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

// Restart stops the child (unless it has exited) and starts it again.
func (d *Daemon) Restart() {
	d.t.Helper()
	select {
	case <-d.exited:
	default:
		d.Stop()
	}
	d.Start()
}

// Exited is closed once the child has exited (ExitCode then tells how).
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// ExitCode is the exited child's status.
func (d *Daemon) ExitCode() int { return d.cmd.ProcessState.ExitCode() }
