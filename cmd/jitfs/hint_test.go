package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/internal/testworld"
)

// shellWords splits s as sh does, for the test to run a printed command.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `for a in `+s+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh could not take %s: %v", s, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

// TestStartHintsWithOwnSocket: the start-up lines of `jitfs output` and
// `jitfs mount` given a --socket of their own, in a directory whose name a
// shell would split, print commands that work as pasted: the flush hint
// names the socket (flush could not find it from the mountpoint), and
// both quote the paths.
func TestStartHintsWithOwnSocket(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/a", 10)
	dir := filepath.Join(t.TempDir(), "it's a dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	outSock := filepath.Join(dir, "out.sock")
	d := w.outputForTest("jobs/hint", "", "--socket", outSock)
	hint := regexp.MustCompile(`jitfs: hook API at .* \((jitfs flush .*)\)\n`)
	var m []string
	testworld.WaitFor(t, "the output area's hook API line", func() bool {
		m = hint.FindStringSubmatch(d.Log.String())
		return m != nil
	})
	argv := shellWords(t, m[1])
	if want := []string{"jitfs", "flush", "--wait", "--socket", outSock, d.mnt}; strings.Join(argv, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("hint %s is %q to a shell, want %q", m[1], argv, want)
	}
	if out, code := runJitfs(t, argv[1:]...); code != 0 {
		t.Errorf("the printed %s: exit %d\n%s", m[1], code, out)
	}

	mntSock := filepath.Join(dir, "show.sock")
	s := w.mountForTest("show", "", "--socket", mntSock)
	export := regexp.MustCompile(`jitfs: hook API at .* \(export (JITFS_SOCKET=.*)\)\n`)
	testworld.WaitFor(t, "the mount's hook API line", func() bool {
		m = export.FindStringSubmatch(s.Log.String())
		return m != nil
	})
	if got := shellWords(t, m[1]); len(got) != 1 || got[0] != "JITFS_SOCKET="+mntSock {
		t.Errorf("export %s is %q to a shell, want JITFS_SOCKET=%s", m[1], got, mntSock)
	}
}

// TestShellQuote: plain paths stay as they are; anything else is quoted
// so that sh reads it back unchanged.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"/run/jitfs/out.sock", "/tmp/a b.sock", "it's", "$HOME", "", "a\nb", "*"} {
		q := shellQuote(s)
		if s == "/run/jitfs/out.sock" && q != s {
			t.Errorf("%q quoted as %s", s, q)
		}
		out, err := exec.Command("sh", "-c", `printf '%s' `+q).Output()
		if err != nil || string(out) != s {
			t.Errorf("%q quoted as %s reads back as %q (%v)", s, q, out, err)
		}
	}
}
