package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// TestPrefetchCommand drives a real daemon's hook API with `jitfs
// prefetch` and `jitfs status`, then reads the files through the mount:
// everything prefetched is served without another GCS request.
func TestPrefetchCommand(t *testing.T) {
	w := newWorld(t, false)
	content := map[string][]byte{}
	for i := 0; i < 12; i++ {
		rel := fmt.Sprintf("tex/t%02d.tx", i)
		content[rel] = w.PutRandom("show/"+rel, 64<<10)
	}
	for f := 1001; f <= 1010; f++ {
		rel := fmt.Sprintf("plates/p.%04d.exr", f)
		content[rel] = w.PutRandom("show/"+rel, 30_000)
	}
	for _, tile := range []int{1001, 1002, 1011} {
		rel := fmt.Sprintf("tex/udim/g.%d.png", tile)
		content[rel] = w.PutRandom("show/"+rel, 20_000)
	}
	w.PutRandom("show/lib/big.blend", 20<<20)
	sock := filepath.Join(t.TempDir(), "jitfs.sock")
	d := w.mountForTest("show", "", "--socket", sock)

	// The socket is bound just after the mount goes live.
	st, err := os.Stat(sock)
	for deadline := time.Now().Add(20 * time.Second); err != nil && time.Now().Before(deadline); st, err = os.Stat(sock) {
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket: %v %v", st, err)
	}
	// A directory means its subtree.
	out, code := runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--job", "j1", d.path("tex"))
	if code != 0 || !strings.Contains(out, "15 resident") {
		t.Fatalf("prefetch dir: exit %d: %s", code, out)
	}
	manifest := filepath.Join(t.TempDir(), "m.txt")
	os.WriteFile(manifest, []byte("# plates of the task\n"+d.path("plates/p.%04d.exr")+" 1001-1010\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--job", "j1", "--manifest", manifest)
	if code != 0 || !strings.Contains(out, "10 resident") {
		t.Fatalf("prefetch manifest: exit %d: %s", code, out)
	}
	// UDIM tiles are found by listing their directory in the daemon's
	// namespace (no round trip through the kernel into the same daemon);
	// the tiles were already resident, so only the listing is asked for.
	udim := filepath.Join(t.TempDir(), "udim.txt")
	os.WriteFile(udim, []byte(d.path("tex/udim/g.<UDIM>.png")+"\n"+d.path("tex/none/g.<UDIM>.png")+"\n"), 0o644)
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--job", "j1", "--manifest", udim)
	// The tiles of a directory that does not exist are reported missing.
	if code != exitPrefetchMissing || !strings.Contains(out, "3 resident") || !strings.Contains(out, "1 missing") ||
		!strings.Contains(out, d.path("tex/none/g.<UDIM>.png")) {
		t.Fatalf("prefetch UDIM tiles: exit %d: %s", code, out)
	}
	// A trace's read ranges of a large file: only those are fetched.
	tr := filepath.Join(t.TempDir(), "t.jsonl")
	os.WriteFile(tr, []byte(`{"format":"jitfs.trace/v1","source":"strace","root":"/old/show"}
{"t":0,"pid":1,"op":"open","path":"/old/show/lib/big.blend","fh":3,"size":20971520}
{"t":0,"pid":1,"op":"read","path":"/old/show/lib/big.blend","fh":3,"off":10485760,"len":4096,"n":4096}
`), 0o644)
	before := w.Proxy.MediaBytes.Load()
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--from-trace", tr)
	if code != 0 || !strings.Contains(out, "1 resident") {
		t.Fatalf("prefetch from trace: exit %d: %s", code, out)
	}
	if moved := w.Proxy.MediaBytes.Load() - before; moved > 1<<20 {
		t.Errorf("a 4 KiB range of a 20 MiB file moved %d bytes", moved)
	}

	out, code = runJitfs(t, "status", "--socket", sock, "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, out)
	}
	var rep hooks.StatusReply
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Jobs) != 1 || rep.Jobs[0].ID != "j1" || rep.Jobs[0].Resident != 25 || rep.PrefetchedBytes == 0 || rep.Mountpoint != d.mnt {
		t.Errorf("status = %+v", rep)
	}

	media := w.Proxy.MediaReqs.Load()
	for rel, want := range content {
		mustEqualBytes(t, rel, mustRead(t, d.path(rel)), want)
	}
	if n := w.Proxy.MediaReqs.Load() - media; n != 0 {
		t.Errorf("reading prefetched files made %d GCS data requests", n)
	}

	// Bad items: non-zero exit with the reasons; a missing file outranks
	// one outside the mount, which alone is exit 1.
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", d.path("tex/nope.tx"), "/etc/passwd")
	if code != exitPrefetchMissing || !strings.Contains(out, "missing   "+d.path("tex/nope.tx")) || !strings.Contains(out, "outside   /etc/passwd") {
		t.Errorf("bad items: exit %d: %s", code, out)
	}
	out, code = runJitfs(t, "prefetch", "--socket", sock, "/etc/passwd")
	if code != 1 || !strings.Contains(out, "outside") {
		t.Errorf("outside the mount: exit %d: %s", code, out)
	}
	out, code = runJitfs(t, "prefetch", "--socket", sock, "--release", "--job", "j1")
	if code != 0 {
		t.Errorf("release: exit %d: %s", code, out)
	}
	out, code = runJitfs(t, "prefetch", "--socket", filepath.Join(t.TempDir(), "none.sock"), d.path("tex"))
	if code != exitPrefetchNoDaemon || !oneLine(out) {
		t.Errorf("no daemon: exit %d: %s", code, out)
	}
}
