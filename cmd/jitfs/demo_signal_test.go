package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/jitfs/jitfs/internal/testworld"
)

// demoMountLine is the demo's line naming its mountpoint.
var demoMountLine = regexp.MustCompile(`mounting at (\S+) with cache`)

// waitDemoExit waits for the demo child and returns its exit status.
func waitDemoExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	var ee *exec.ExitError
	if err := cmd.Wait(); err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode()
}

// demoCleanedUp fails the test if the demo left its mount, its hook
// socket or its temporary directory behind.
func demoCleanedUp(t *testing.T, mnt string) {
	t.Helper()
	if ok, _ := mountinfo.Mounted(mnt); ok {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Errorf("%s is still mounted", mnt)
	}
	if _, err := os.Stat(hooks.DefaultSocket(mnt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hook socket %s is left: %v", hooks.DefaultSocket(mnt), err)
	}
	if _, err := os.Stat(filepath.Dir(mnt)); !errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(filepath.Dir(mnt))
		t.Errorf("the temporary directory %s is left: %v", filepath.Dir(mnt), err)
	}
}

// TestDemoInterruptCleansUp: Ctrl-C while the demo's mount serves (here
// during its frames or its pre-sync over a slow emulated link) unmounts
// it, removes its socket and temporary directory, and exits 130, as a
// shell reports an interrupted command.
func TestDemoInterruptCleansUp(t *testing.T) {
	// At 1 MB/s the sample's pre-sync alone takes seconds: the demo is
	// still running when its mount appears.
	cmd := testworld.Command(context.Background(), "demo", "--show-size", "0", "--bandwidth", "1MB/s", "--rtt", "1ms")
	var out testworld.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	startChild(t, cmd)
	var mnt string
	testworld.WaitFor(t, "the demo to mount", func() bool {
		m := demoMountLine.FindStringSubmatch(out.String())
		if m == nil {
			return false
		}
		mnt = m[1]
		ok, _ := mountinfo.Mounted(mnt)
		return ok
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waitDemoExit(t, cmd); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130:\n%s", code, out.String())
	}
	if !strings.HasSuffix(out.String(), "jitfs demo: stopped by SIGINT\n") {
		t.Errorf("no one line saying the demo was stopped:\n%s", out.String())
	}
	demoCleanedUp(t, mnt)
}

// TestDemoClosedStdoutCleansUp: `jitfs demo | head` closes the demo's
// stdout while its mount serves; the next write fails with EPIPE instead
// of killing the demo, which cleans up and exits 141 (128+SIGPIPE) without
// a message nobody reads. A --show-size below the sample says the sample
// alone is used.
func TestDemoClosedStdoutCleansUp(t *testing.T) {
	cmd := testworld.Command(context.Background(), "demo", "--show-size", "1MiB", "--bandwidth", "1MB/s", "--rtt", "1ms")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testworld.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	startChild(t, cmd)
	w.Close()
	var head strings.Builder
	var mnt string
	for sc := bufio.NewScanner(r); mnt == "" && sc.Scan(); {
		head.WriteString(sc.Text() + "\n")
		if m := demoMountLine.FindStringSubmatch(sc.Text()); m != nil {
			mnt = m[1]
		}
	}
	if mnt == "" {
		t.Fatalf("no mount line:\n%s%s", head.String(), stderr.String())
	}
	if !strings.Contains(head.String(), "jitfs demo: --show-size 1.0 MiB is less than the ") || !strings.Contains(head.String(), "sample: the show is the sample alone\n") {
		t.Errorf("no line saying the sample alone is used:\n%s", head.String())
	}
	testworld.WaitFor(t, "the demo to mount", func() bool {
		ok, _ := mountinfo.Mounted(mnt)
		return ok
	})
	r.Close()
	if code := waitDemoExit(t, cmd); code != 141 {
		t.Errorf("exit %d after its stdout closed, want 141:\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "jitfs demo:") {
		t.Errorf("an error line nobody reads:\n%s", stderr.String())
	}
	demoCleanedUp(t, mnt)
}
