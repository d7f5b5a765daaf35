package main

import (
	"context"
	"errors"
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

// TestFlushNoOutputAreaExits69: with no output area to ask, jitfs flush
// exits 69 (EX_UNAVAILABLE, as its help and docs/outputs.md say), not 1:
// a --socket nothing listens on, and a directory with no output area's
// socket.
func TestFlushNoOutputAreaExits69(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "nonexist.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"flush", "--socket", sock, dir}, "jitfs flush: no output area answers on " + sock + ": "},
		{[]string{"flush", "--wait", dir}, "jitfs flush: hooks: no jitfs daemon socket found for " + dir},
	} {
		out, code := runJitfs(t, tc.args...)
		if code != exitSetup || !strings.HasPrefix(out, tc.want) || !oneLine(out) {
			t.Errorf("jitfs %s: exit %d, want %d, one line starting %q:\n%s", strings.Join(tc.args, " "), code, exitSetup, tc.want, out)
		}
	}
}

// childHasSocket reports whether process pid holds a socket: a jitfs
// flush that has one has dialled its daemon, so its signal handling is
// in place.
func childHasSocket(pid int) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}

// TestFlushInterruptAndUnmountPending: SIGINT during `jitfs flush --wait`
// while an upload cannot finish (GCS answers 503) ends it with exit 75,
// what is still pending listed, and one plain line saying it was
// interrupted; then `jitfs unmount`, given a symbolic link to the output
// area, says before unmounting that the output not durable yet stays
// staged.
func TestFlushInterruptAndUnmountPending(t *testing.T) {
	w := newWorld(t, false)
	d := w.outputForTest("jobs/int", "")
	w.Proxy.UploadOutage.Store(true)
	if err := writeFrame(d.path(""), "a.exr", testworld.RandBytes("a", 100_000)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the upload to be retrying", 2*time.Minute, func() bool { return outputStatus(t, d, 0).Files["retrying"] > 0 })

	cmd := testworld.Command(context.Background(), "flush", "--wait", d.mnt)
	var stdout, stderr testworld.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	startChild(t, cmd)
	testworld.WaitFor(t, "jitfs flush to ask its daemon", func() bool { return childHasSocket(cmd.Process.Pid) })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitNotDurable {
		t.Errorf("exit %d after SIGINT, want %d\nstdout: %s\nstderr: %s", code, exitNotDurable, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "1 outputs are NOT durable") || !strings.Contains(stdout.String(), d.path("a.exr")) {
		t.Errorf("what is pending is not listed:\n%s", stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "jitfs flush: interrupted after ") ||
		!strings.HasSuffix(last, ": 1 outputs not durable yet stay staged and go on uploading") || strings.Contains(stderr.String(), "flush: flush:") {
		t.Errorf("stderr's last line %q, want one plain line saying it was interrupted:\n%s", last, stderr.String())
	}

	link := filepath.Join(t.TempDir(), "out-link")
	if err := os.Symlink(d.mnt, link); err != nil {
		t.Fatal(err)
	}
	out, code := runJitfs(t, "unmount", link)
	if code != 0 {
		t.Fatalf("jitfs unmount through a link: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "jitfs unmount: "+link+": 1 outputs not durable yet stay staged; they upload when the area is served again (jitfs flush --wait to wait first)\n") {
		t.Errorf("no word on the output not durable yet:\n%s", out)
	}
	testworld.WaitFor(t, "the output area to be unmounted", func() bool {
		ok, _ := mountinfo.Mounted(d.mnt)
		return !ok
	})
	<-d.Exited()
}

// TestUnmountEmptyArgument: an empty MOUNT (an unset variable in a
// script) is a usage error, not the current directory.
func TestUnmountEmptyArgument(t *testing.T) {
	out, code := runJitfs(t, "unmount", "")
	if code != 2 || !oneLine(out) || !strings.Contains(out, "argument 1 is empty") {
		t.Errorf("jitfs unmount \"\": exit %d:\n%s", code, out)
	}
}
