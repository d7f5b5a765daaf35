package wan

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperCmd runs the test binary in a helper mode, from a process that is
// not in a Reexec namespace as far as it can tell (the marker is dropped),
// so its Reexec nests a new namespace inside this one.
func helperCmd(t *testing.T, exe, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(withoutEnv(os.Environ(), envHostNS), helperEnv+"="+mode, helperDirEnv+"="+dir)
	// Its own session, so it has no controlling terminal even when the
	// tests run from one: SIGINT must then be relayed, not left to the tty.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatalf("running the helper: %v", err)
	}
	return ee.ExitCode()
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestReexecRunsChildInNewNamespaceSharingFiles(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	cmd := helperCmd(t, testExe(t), "exit", dir)
	cmd.Stderr = &stderr
	if code := exitCode(t, cmd.Run()); code != 7 {
		t.Fatalf("exit code %d, want the child's 7; stderr: %s", code, stderr.String())
	}
	// The child wrote under /tmp from inside its namespace: the host sees it.
	b, err := os.ReadFile(filepath.Join(dir, "child"))
	if err != nil {
		t.Fatalf("the child's file is not visible outside its namespace: %v", err)
	}
	id, lo, _ := strings.Cut(string(b), "\n")
	mine, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	if id == mine || id == os.Getenv(envHostNS) || !strings.HasPrefix(id, "net:[") {
		t.Errorf("child namespace %q, want a new one (this test's is %q, the host's %q)", id, mine, os.Getenv(envHostNS))
	}
	if lo != "lo-up" {
		t.Errorf("child loopback: %s, want lo-up (Reexec brings it up)", lo)
	}
}

// waitReady waits for the helper's ready file.
func waitReady(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the child never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFUSEMountInsideIsVisibleOutside: `jitfs bench` mounts jitfs from inside
// the namespace, and the mount must be the host's like any other.
func TestFUSEMountInsideIsVisibleOutside(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := helperCmd(t, testExe(t), "fuse", dir)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, cmd, dir)
	got, readErr := os.ReadFile(filepath.Join(dir, "mnt", "netns"))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd.Wait()); code != 0 {
		t.Fatalf("FUSE helper exit code %d; stderr: %s", code, stderr.String())
	}
	if readErr != nil {
		t.Fatalf("reading the child's FUSE mount from outside its namespace: %v", readErr)
	}
	mine, _ := netnsID()
	if id := string(got); id == mine || !strings.HasPrefix(id, "net:[") {
		t.Errorf("the mount was served from namespace %q, want the child's own (this test's is %q)", id, mine)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), filepath.Join(dir, "mnt")) {
		t.Errorf("the child's mount outlived it")
	}
}

func TestReexecPropagatesDeathBySignal(t *testing.T) {
	err := helperCmd(t, testExe(t), "killself", t.TempDir()).Run()
	if code := exitCode(t, err); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit code %d, want %d (128+SIGKILL)", code, 128+int(syscall.SIGKILL))
	}
}

func TestReexecForwardsSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := helperCmd(t, testExe(t), "signal", dir)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitReady(t, cmd, dir)
			// Signal the parent only: the child must get it relayed.
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := exitCode(t, cmd.Wait()); code != 20+int(sig) {
				t.Fatalf("exit code %d, want %d (the child saw %v)", code, 20+int(sig), sig)
			}
		})
	}
}

// TestReexecNeedsRoot runs a copy of the test binary as nobody.
func TestReexecNeedsRoot(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir's directories are private to root; nobody must reach the copy.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "wan.test")
	src, err := os.Open(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := helperCmd(t, exe, "notroot", dir)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	if code := exitCode(t, cmd.Run()); code != 5 {
		t.Fatalf("exit code %d, want 5 (ErrNotRoot); stderr: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "needs root") {
		t.Errorf("error %q does not say it needs root", stderr.String())
	}
}
