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
`), 0o644)
	lines, err := parseManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	items, err := resolveManifest(m, lines, "/mnt/s")
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
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items\n%q\nwant\n%q", got, want)
	}
	// Without the mount, a relative line cannot be placed.
	if _, err := resolveManifest(m, lines, ""); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), m+":2: tex/wall.tx is relative") {
		t.Errorf("no mount: %v", err)
	}
}

// Every bad line is reported with its file and line, not only the first.
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
`), 0o644)
	_, err := parseManifest(m)
	var me *manifestError
	if !errors.As(err, &me) || !errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a manifestError", err)
	}
	for i, want := range []string{":2: want PATH or PATTERN FRAMES", ":3: frame list", ":4: pattern", ":5: frames were given but pattern",
		":6: <UDIM> or <UVTILE> may appear once", ":7: pattern", ":8: pattern"} {
		if i >= len(me.lines) || !strings.HasPrefix(me.lines[i], m+want) {
			t.Errorf("bad lines %q: #%d want %q", me.lines, i, m+want)
		}
	}
	if len(me.lines) != 7 {
		t.Errorf("%d bad lines reported, want 7: %q", len(me.lines), me.lines)
	}
	// Lines that parse but leave the mount are bad lines too, all of them.
	os.WriteFile(m, []byte("/etc/passwd\n../up.tx\n/mnt/s/ok.tx\n/mnt/sx/near.tx\n"), 0o644)
	lines, err := parseManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = resolveManifest(m, lines, "/mnt/s")
	if !errors.As(err, &me) || len(me.lines) != 3 || !strings.Contains(me.lines[0], ":1: /etc/passwd is outside the mount /mnt/s") ||
		!strings.Contains(me.lines[1], ":2: ../up.tx leaves the mount") || !strings.Contains(me.lines[2], ":4: /mnt/sx/near.tx is outside") {
		t.Errorf("outside the mount: %v", err)
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
	for _, n := range []string{"tex/wall.tx", "tex/skin.1001.tx", "tex/skin.1012.tx", "tex/col.u1_v1.tx", "tex/col.u3_v2.tx", "slow/big.exr"} {
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
