package main

import (
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
)

// installHelper links /sbin/mount.fuse.jitfs to this test binary, where
// mount(8) looks for the helper of -t fuse.jitfs, for the test's length.
func installHelper(t *testing.T) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := "/sbin/mount.fuse.jitfs"
	if _, err := os.Lstat(link); err == nil {
		t.Fatalf("%s exists already (an installed jitfs?); the test installs its own and would replace it", link)
	}
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
}

// mountCmd runs mount(8) (or umount(8)); the helper it starts is this test
// binary, which acts as jitfs with the child marker in its environment.
func mountCmd(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "JITFS_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// helperPid is the daemon's pid the helper printed ("pid N").
func helperPid(t *testing.T, out string) int {
	t.Helper()
	var pid int
	i := strings.Index(out, "(pid ")
	if i < 0 {
		t.Fatalf("the helper did not say which process serves: %q", out)
	}
	if _, err := fmt.Sscanf(out[i:], "(pid %d", &pid); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	return pid
}

// waitUnmounted waits for the mount to go and its daemon to exit (gone,
// or a zombie its new parent has not reaped yet).
func waitUnmounted(t *testing.T, mnt string, pid int) {
	t.Helper()
	waitFor(t, "the mount to end and its daemon to exit", time.Minute, func() bool {
		ok, _ := mountinfo.Mounted(mnt)
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		gone := err != nil || strings.Contains(string(stat), ") Z ")
		return !ok && gone
	})
}

// TestMountHelper: `mount -t fuse.jitfs` and an fstab line mount a bucket
// prefix through /sbin/mount.fuse.jitfs, -o options become flags, mount(8)
// returns once the mount serves, and umount(8) ends it; an unknown option
// fails the mount with a message naming it.
func TestMountHelper(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("show/tex/wall.tx", 100_000)
	installHelper(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "jitfs.log")
	// A failing test must not leave a mount behind: its daemon, in a
	// session of its own, is no child of the test's.
	t.Cleanup(func() {
		if ok, _ := mountinfo.Mounted(mnt); ok {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	opts := "cache_dir=" + filepath.Join(dir, "cache") + ",cache_size=1GiB,endpoint=" + w.Proxy.Addr() +
		",socket=none,log_file=" + logFile + ",nopassthrough,_netdev,noauto"
	out, code := mountCmd(t, "mount", "-t", "fuse.jitfs", "gs://"+testBucket+"/show", mnt, "-o", opts)
	if code != 0 {
		t.Fatalf("mount -t fuse.jitfs exited %d: %s\n%s", code, out, lastLines(logFile, 20))
	}
	// mount(8) returned: the mount serves now, no waiting.
	mustEqualBytes(t, "read through a helper mount", mustRead(t, filepath.Join(mnt, "tex/wall.tx")), want)
	if typ, _ := mountinfo.Type(mnt); typ != "fuse.jitfs" {
		t.Fatalf("mounted as %q", typ)
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "passthrough=false") {
		t.Errorf("the -o options did not reach jitfs mount (nopassthrough):\n%s", b)
	}
	pid := helperPid(t, out)
	if out, code := mountCmd(t, "umount", mnt); code != 0 {
		t.Fatalf("umount: %d %s", code, out)
	}
	waitUnmounted(t, mnt, pid)

	fstab := filepath.Join(dir, "fstab")
	line := "gs://" + testBucket + "/show " + mnt + " fuse.jitfs " + opts + " 0 0\n"
	if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = mountCmd(t, "mount", "--fstab", fstab, mnt)
	if code != 0 {
		t.Fatalf("mount from an fstab line exited %d: %s\n%s", code, out, lastLines(logFile, 20))
	}
	pid = helperPid(t, out)
	mustEqualBytes(t, "read through an fstab mount", mustRead(t, filepath.Join(mnt, "tex/wall.tx")), want)
	if out, code := runJitfs(t, "unmount", mnt); code != 0 {
		t.Fatalf("jitfs unmount: %d %s", code, out)
	}
	waitUnmounted(t, mnt, pid)

	out, code = mountCmd(t, "mount", "-t", "fuse.jitfs", "gs://"+testBucket+"/show", mnt, "-o", opts+",cache_sise=1GiB,bogus")
	if code == 0 || !strings.Contains(out, "cache_sise=1GiB, bogus") {
		t.Fatalf("mount with unknown options: exit %d, %q; want a failure naming both", code, out)
	}
	if ok, _ := mountinfo.Mounted(mnt); ok {
		t.Fatal("mounted despite unknown options")
	}
}
