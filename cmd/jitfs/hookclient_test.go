package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/hooks"
)

// The Python hook client (nuke-callbacks/plugin/jitfs_client.py, copied into the
// Blender add-on) must find the same socket as the daemon and the Go tools.

// TestHookClientCopiesAgree: the Blender add-on's copy of the client is the
// client (scripts/sync-hook-client.py refreshes it).
func TestHookClientCopiesAgree(t *testing.T) {
	out, err := exec.Command("python3", "../../scripts/sync-hook-client.py", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestHookClientDefaultSocket compares the Python default_socket with
// hooks.DefaultSocket, long and oddly named mountpoints included.
func TestHookClientDefaultSocket(t *testing.T) {
	mounts := []string{"/mnt/jitfs", "/mnt/my-show", "/", "/.hidden/x", "/a b/ü%", "/mnt/jitfs/",
		"/" + strings.Repeat("deep/", 30) + "end", "/" + strings.Repeat("x", 90)}
	script := "import sys\nsys.path.insert(0, '../../nuke-callbacks/plugin')\nimport jitfs_client\n" +
		"for m in sys.argv[1:]:\n    print(jitfs_client.default_socket(m))\n"
	out, err := exec.Command("python3", append([]string{"-c", script}, mounts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(got) != len(mounts) {
		t.Fatalf("python printed %d lines for %d mountpoints: %s", len(got), len(mounts), out)
	}
	for i, m := range mounts {
		if want := hooks.DefaultSocket(m); got[i] != want {
			t.Errorf("default_socket(%q) = %q, hooks.DefaultSocket = %q", m, got[i], want)
		}
	}
}
