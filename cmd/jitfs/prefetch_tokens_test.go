package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// Hand-written tokens become the protocol's printf form, and paths
// relative to the mount are joined to it.
func TestPrefetchManifestTokens(t *testing.T) {
	m := filepath.Join(t.TempDir(), "m.txt")
	os.WriteFile(m, []byte(`# comment
tex/wall.tx
./tex/floor.tx
/mnt/s/abs.tx
plates/a.####.exr 1001-1002
plates/b.$F4.exr 7
plates/c.$F.exr 7
plates/d.@@@.exr 7
/mnt/s/plates/e.%05d.exr 7
tex/skin.<UDIM>.tx
tex/skin.<UVTILE>.tx
lit/#hash@at.tx
assets/my file.tex
  /mnt/s/two  spaces.tx  
"plates/q q.####.exr" 1001
"lit/x 1001-1002"
"tex/my <UDIM>.tx"
plates/sp ace.####.exr 1001
`), 0o644)
	lines, bad, err := parseManifest(m)
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	items, err := resolveManifest(m, lines, nil, "/mnt/s")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		if it.Seq != nil {
			got = append(got, it.Seq.Pattern+" "+it.Seq.Frames)
		} else {
			got = append(got, it.Path)
		}
	}
	want := []string{
		"/mnt/s/tex/wall.tx", "/mnt/s/tex/floor.tx", "/mnt/s/abs.tx",
		"/mnt/s/plates/a.%04d.exr 1001-1002", "/mnt/s/plates/b.%04d.exr 7", "/mnt/s/plates/c.%d.exr 7",
		"/mnt/s/plates/d.%03d.exr 7", "/mnt/s/plates/e.%05d.exr 7",
		"/mnt/s/tex/skin.<UDIM>.tx ", "/mnt/s/tex/skin.<UVTILE>.tx ",
		"/mnt/s/lit/#hash@at.tx", // one field, no tile token: a literal name
		// Spaces: a last field that is no frame list, on a line with no
		// frame token, leaves the whole line one path; quotes say so
		// outright.
		"/mnt/s/assets/my file.tex", "/mnt/s/two  spaces.tx",
		"/mnt/s/plates/q q.%04d.exr 1001", "/mnt/s/lit/x 1001-1002", "/mnt/s/tex/my <UDIM>.tx ",
		"/mnt/s/plates/sp ace.%04d.exr 1001",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items\n%q\nwant\n%q", got, want)
	}
	// Without the mount, a relative line cannot be placed.
	if _, err := resolveManifest(m, lines, nil, ""); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), m+":2: tex/wall.tx is relative") {
		t.Errorf("no mount: %v", err)
	}
}

// Every bad line is reported with its file and line, not only the first,
// and those outside the mount with the syntax errors, in one pass.
func TestPrefetchManifestEveryBadLine(t *testing.T) {
	m := filepath.Join(t.TempDir(), "m.txt")
	os.WriteFile(m, []byte(`/mnt/s/ok.tx
/mnt/s/a.####.exr 1001-1002 extra
/mnt/s/b.%04d.exr 5-1
/mnt/s/c.$FF.exr 1
/mnt/s/d.exr 1
/mnt/s/<UDIM>/e.tx
/mnt/s/f.<UDIM>.<UVTILE>.tx
/mnt/s/g.##########.exr 1
/etc/passwd
../up.tx
/mnt/sx/near.tx
"/mnt/s/unclosed.tx
"/mnt/s/q.####.exr" 1 2
assets/#1 file.tex
`), 0o644)
	lines, bad, err := parseManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = resolveManifest(m, lines, bad, "/mnt/s")
	var me *manifestError
	if !errors.As(err, &me) || !errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a manifestError", err)
	}
	want := []string{`:2: frame list "extra"`, ":3: frame list", ":4: pattern", ":5: /mnt/s/d.exr has no frame token for the frame list \"1\" (a path with spaces goes in double quotes",
		":6: <UDIM> or <UVTILE> may appear once", ":7: pattern", ":8: pattern",
		":9: /etc/passwd is outside the mount /mnt/s", ":10: ../up.tx leaves the mount", ":11: /mnt/sx/near.tx is outside",
		`:12: no closing "`, ":13: want one frame list after the quoted pattern", `:14: frame list "file.tex"`}
	for i, w := range want {
		if i >= len(me.lines) || !strings.HasPrefix(me.lines[i], m+w) {
			t.Errorf("bad lines %q: #%d want %q", me.lines, i, m+w)
		}
	}
	if len(me.lines) != len(want) || !strings.HasPrefix(err.Error(), "13 bad manifest lines:") {
		t.Errorf("%d bad lines reported, want %d: %v", len(me.lines), len(want), err)
	}
	os.WriteFile(m, []byte("/etc/passwd\n"), 0o644)
	if _, err := manifestItems(m, "/mnt/s"); err == nil || !strings.HasPrefix(err.Error(), "1 bad manifest line:") {
		t.Errorf("one bad line: %v", err)
	}
}

// TestPrefetchExitCodes drives `jitfs prefetch` against a real mount and
// hook socket: tokens and relative paths in a manifest, --dry-run without
// the daemon, and every documented exit code.
func TestPrefetchExitCodes(t *testing.T) {
	w := newWorld(t, false)
	for f := 1001; f <= 1003; f++ {
		w.PutRandom(hooksName("show/plates/a.%04d.exr", f), 10_000)
		w.PutRandom(hooksName("show/plates/h.%d.exr", f), 10_000)
	}
	for _, n := range []string{"tex/wall.tx", "tex/skin.1001.tx", "tex/skin.1012.tx", "tex/col.u1_v1.tx", "tex/col.u3_v2.tx", "slow/big.exr", "tex/my file.tx"} {
		w.PutRandom("show/"+n, 10_000)
	}
	sock := filepath.Join(t.TempDir(), "jitfs.sock")
	d := w.mountForTest("show", "", "--socket", sock)
	waitForSocket(t, sock)

	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	os.WriteFile(good, []byte(`tex/wall.tx
./plates/a.####.exr 1001-1003
plates/a.@@@@.exr 1001
plates/h.$F.exr 1001-1003
`+d.path("plates/a.$F4.exr")+` 1002
tex/skin.<UDIM>.tx
tex/col.<UVTILE>.tx
`), 0o644)

	// --dry-run needs no daemon: a socket nobody serves changes nothing.
	noSock := filepath.Join(t.TempDir(), "none.sock")
	out, code := runJitfs(t, "prefetch", "--dry-run", "--socket", noSock, "--mount", d.mnt, "--manifest", good)
	if code != 0 || !strings.Contains(out, "11 files: 11 present, 0 missing") ||
		!strings.Contains(out, "ok        "+d.path("tex/col.u3_v2.tx")) || !strings.Contains(out, "ok        "+d.path("plates/h.1002.exr")) ||
		!strings.Contains(out, "ok        "+d.path("tex/skin.1012.tx")) {
		t.Fatalf("dry run: exit %d: %s", code, out)
	}
	bad := filepath.Join(dir, "missing.txt")
	os.WriteFile(bad, []byte("tex/wall.tx\nplates/a.####.exr 1003-1004\ntex/none.<UVTILE>.tx\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--dry-run", "--mount", d.mnt, "--manifest", bad)
	if code != exitPrefetchMissing || !strings.Contains(out, "missing   "+d.path("plates/a.1004.exr")) ||
		!strings.Contains(out, "missing   "+d.path("tex/none.<UVTILE>.tx")) || !strings.Contains(out, "4 files: 2 present, 2 missing") {
		t.Errorf("dry run, missing: exit %d: %s", code, out)
	}

	// The same manifest through the daemon, which gives the mount.
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--manifest", good)
	if code != 0 || !strings.Contains(out, "11 files: 11 resident") {
		t.Fatalf("prefetch: exit %d: %s", code, out)
	}
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--frames", "1001-1004", d.path("plates/a.####.exr"))
	if code != exitPrefetchMissing || !strings.Contains(out, "missing   "+d.path("plates/a.1004.exr")) {
		t.Errorf("missing: exit %d: %s", code, out)
	}

	// Usage: every bad line of a manifest, before any daemon is asked.
	malformed := filepath.Join(dir, "malformed.txt")
	os.WriteFile(malformed, []byte("plates/a.####.exr 3-1\n/etc/ok\nplates/a.%q.exr 1\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--socket", noSock, "--manifest", malformed)
	if code != 2 || !strings.Contains(out, malformed+":1: ") || !strings.Contains(out, malformed+":3: ") || strings.Contains(out, ":2:") {
		t.Errorf("malformed manifest: exit %d: %s", code, out)
	}
	outside := filepath.Join(dir, "outside.txt")
	os.WriteFile(outside, []byte("/etc/passwd\ntex/wall.tx\n/usr/share/x\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--manifest", outside)
	if code != 2 || !strings.Contains(out, outside+":1: /etc/passwd is outside the mount "+d.mnt) || !strings.Contains(out, outside+":3: ") {
		t.Errorf("outside the mount: exit %d: %s", code, out)
	}
	// Syntax errors and lines outside the mount, in one pass: the daemon
	// names the mount even though the request is never sent.
	os.WriteFile(outside, []byte("/etc/passwd\nplates/a.####.exr 3-1\n../up.tx\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--manifest", outside)
	if code != 2 || !strings.Contains(out, "3 bad manifest lines") || !strings.Contains(out, outside+":1: /etc/passwd is outside") ||
		!strings.Contains(out, outside+":2: frame list") || !strings.Contains(out, outside+":3: ../up.tx leaves the mount") {
		t.Errorf("syntax and outside in one pass: exit %d: %s", code, out)
	}
	// A path with spaces, bare or quoted.
	spaces := filepath.Join(dir, "spaces.txt")
	os.WriteFile(spaces, []byte("tex/my file.tx\n\"tex/my file.tx\"\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--manifest", spaces)
	if code != 0 || !strings.Contains(out, "1 resident") {
		t.Errorf("spaces: exit %d: %s", code, out)
	}

	// No daemon: the render may go on uncached.
	out, code = runJitfs(t, "prefetch", "--socket", noSock, d.path("tex/wall.tx"))
	if code != exitPrefetchNoDaemon || !oneLine(out) {
		t.Errorf("no daemon: exit %d: %s", code, out)
	}

	// Pending at the deadline: the object's reads are held on the link.
	var hold atomic.Bool
	hold.Store(true)
	holdFn := func(p string) bool { return hold.Load() && strings.HasSuffix(p, "slow/big.exr") }
	w.Proxy.HoldMedia.Store(&holdFn)
	t.Cleanup(func() { hold.Store(false) })
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "300ms", d.path("slow/big.exr"))
	hold.Store(false)
	if code != exitPrefetchPending || !strings.Contains(out, "pending   "+d.path("slow/big.exr")) {
		t.Errorf("pending: exit %d: %s", code, out)
	}

	out, code = runJitfs(t, "prefetch", "--help")
	for _, want := range []string{"$F1..$F9", "<UVTILE>", "66  files missing", "69  no daemon", "75  still pending", "-dry-run"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--help: exit %d, no %q: %s", code, want, out)
		}
	}
}

func hooksName(pattern string, frame int) string {
	p, err := hooks.ExpandPattern(pattern, []int{frame}, nil)
	if err != nil {
		panic(err)
	}
	return p[0]
}

// waitForSocket waits for the hook socket, bound just after the mount
// goes live.
func waitForSocket(t *testing.T, sock string) {
	t.Helper()
	waitFor(t, "the hook socket", 20*time.Second, func() bool {
		st, err := os.Stat(sock)
		return err == nil && st.Mode()&os.ModeSocket != 0
	})
}
