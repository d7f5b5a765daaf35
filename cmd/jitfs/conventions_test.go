package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/jitfs/jitfs/internal/testworld"
)

// notifySocket listens where $NOTIFY_SOCKET points, as systemd does for a
// Type=notify unit, and returns the messages it receives.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

func waitMessage(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	// The bound guards a hung test only; the message comes at once.
	timeout := time.After(time.Minute)
	for {
		select {
		case m := <-msgs:
			if strings.Contains(m, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s from the daemon", want)
		}
	}
}

// TestMountsNotifySystemd: `jitfs mount` and `jitfs output` send READY=1
// once they serve and STOPPING=1 when they stop, as the Type=notify units
// in deploy/ expect.
func TestMountsNotifySystemd(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/a.tx", 1000)
	msgs := notifySocket(t)
	d := w.mountForTest("show", "")
	waitMessage(t, msgs, "READY=1")
	// READY came after the mount went live: the file is there.
	mustRead(t, d.path("a.tx"))
	d.Stop()
	waitMessage(t, msgs, "STOPPING=1")

	o := w.outputForTest("out", "")
	waitMessage(t, msgs, "READY=1")
	o.Stop()
	waitMessage(t, msgs, "STOPPING=1")
}

// TestUnmount: `jitfs unmount` ends a jitfs mount (its daemon exits 0),
// refuses what is not one, says when it is busy, and --lazy detaches a busy
// one.
func TestUnmount(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/a.tx", 1000)
	d := w.mountForTest("show", "")
	if out, code := runJitfs(t, "unmount", d.mnt); code != 0 || !strings.Contains(out, "unmounted") {
		t.Fatalf("unmount exited %d: %s", code, out)
	}
	select {
	case <-d.Exited():
	case <-time.After(time.Minute):
		t.Fatalf("the daemon did not exit after its mount was unmounted\n%s", d.Log)
	}
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("the daemon exited %d after an unmount\n%s", code, d.Log)
	}
	if ok, _ := mountinfo.Mounted(d.mnt); ok {
		t.Fatal("still mounted")
	}

	plain := t.TempDir()
	for _, c := range []struct{ dir, want string }{
		{plain, "is not a mount"},
		{"/proc", "is not a jitfs mount (it is proc)"},
	} {
		out, code := runJitfs(t, "unmount", c.dir)
		if code != 1 || !strings.Contains(out, c.want) || !oneLine(out) {
			t.Errorf("unmount %s: exit %d, %q; want 1 and %q", c.dir, code, out, c.want)
		}
	}
	if out, code := runJitfs(t, "unmount"); code != 2 || !strings.Contains(out, "MOUNT") {
		t.Errorf("unmount without a mount: exit %d, %q", code, out)
	}

	busy := w.mountForTest("show", "")
	f, err := os.Open(busy.path("a.tx"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if out, code := runJitfs(t, "unmount", busy.mnt); code != 1 || !strings.Contains(out, "busy") {
		t.Fatalf("unmount of a busy mount: exit %d, %q", code, out)
	}
	if out, code := runJitfs(t, "unmount", "--lazy", busy.mnt); code != 0 {
		t.Fatalf("unmount --lazy: exit %d, %q", code, out)
	}
	if ok, _ := mountinfo.Mounted(busy.mnt); ok {
		t.Fatal("still mounted after --lazy")
	}
	f.Close()
	select {
	case <-busy.Exited():
	case <-time.After(time.Minute):
		t.Fatalf("the daemon did not exit after a lazy unmount and the last close\n%s", busy.Log)
	}
}

// TestMountWarnings: mounted over a non-empty directory and a cache
// budget beyond the cache disk's space each start with one warning.
func TestMountWarnings(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/a.tx", 1000)
	d := w.mountForTest("show", "", "--cache-size", "1000000TiB")
	// The daemon's output reaches the test through a pipe: wait for its
	// last start-up line, which comes after the warnings.
	testworld.WaitFor(t, "the serving line", func() bool { return strings.Contains(d.Log.String(), "jitfs: serving") })
	log := d.Log.String()
	if !strings.Contains(log, "the cache budget is larger than the space its disk has for it") {
		t.Errorf("no warning for a cache budget beyond the disk:\n%s", log)
	}
	if strings.Contains(log, "non-empty directory") {
		t.Errorf("an empty mountpoint was warned about:\n%s", log)
	}
	d.Stop()
	if err := os.WriteFile(filepath.Join(d.mnt, "leftover.exr"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Start()
	testworld.WaitFor(t, "the serving line", func() bool { return strings.Contains(d.Log.String(), "jitfs: serving") })
	if log := d.Log.String(); !strings.Contains(log, "mounted over a non-empty directory") {
		t.Errorf("no warning for a non-empty mountpoint:\n%s", log)
	}
}

// TestVersion: `jitfs version` and `jitfs --version` print the module
// version, the commit and the Go that built the binary, on stdout, exit 0.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		cmd := testworld.Command(context.Background(), arg)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("jitfs %s: %v\n%s", arg, err, stderr.String())
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "jitfs ") || !strings.Contains(out, "\ncommit ") || !strings.Contains(out, runtime.Version()) || stderr.Len() != 0 {
			t.Errorf("jitfs %s printed %q (stderr %q)", arg, out, stderr.String())
		}
	}
}
