package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/jitfs/jitfs/bench"
	"github.com/jitfs/jitfs/internal/scene"
)

// demoTestShow is the --show-size the demo's tests run with: a few
// generated shots beside the sample, small enough to be quick.
const demoTestShow = 32 << 20

// demoBucketShow counts what the demo's bucket holds at --show-size
// size from the two file trees themselves: the sample, and generated
// filler for the rest.
func demoBucketShow(t *testing.T, size int64) (objects int, bytes int64) {
	t.Helper()
	var sample, filler demoShow
	if err := sample.walk(scene.FS(), nil); err != nil {
		t.Fatal(err)
	}
	if err := filler.walk(bench.Filler(max(size-sample.bytes, 0), demoFirstFiller), nil); err != nil {
		t.Fatal(err)
	}
	return sample.objects + filler.objects, sample.bytes + filler.bytes
}

// demoRow is one row of the demo's side-by-side table.
type demoRow struct {
	name        string
	start, done time.Duration
	bytes       string // as printed: "1.9 MiB"
}

// demoTable parses the side-by-side table that follows its header line,
// up to the first blank line.
func demoTable(t *testing.T, out string) []demoRow {
	t.Helper()
	_, table, ok := strings.Cut(out, "first frame can start")
	if !ok {
		t.Fatalf("no side-by-side table:\n%s", out)
	}
	table, _, _ = strings.Cut(table, "\n\n")
	var rows []demoRow
	for _, l := range strings.Split(table, "\n")[1:] {
		// name  start  done  bytes unit: the name may hold spaces.
		f := strings.Fields(l)
		if len(f) < 5 {
			t.Fatalf("row %q:\n%s", l, out)
		}
		n := len(f)
		r := demoRow{name: strings.Join(f[:n-4], " "), bytes: f[n-2] + " " + f[n-1]}
		var err1, err2 error
		r.start, err1 = time.ParseDuration(f[n-4])
		r.done, err2 = time.ParseDuration(f[n-3])
		if err1 != nil || err2 != nil {
			t.Fatalf("row %q: %v, %v", l, err1, err2)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestDemoOverWAN runs the demo as the README's first command does on a
// machine with root and tc, with the link's flags set: the frames cross
// the emulated WAN, and the side-by-side table has jitfs cold, jitfs warm
// and the pre-sync, which can start its frame only once the whole show,
// sample and generated shots, is copied, so after the cold mount could.
func TestDemoOverWAN(t *testing.T) {
	// --keep leaves the pre-sync's copy, for the test to weigh.
	out, code := runJitfs(t, "demo", "--rtt", "30ms", "--bandwidth", "50MB/s", "--show-size", "32MiB", "--keep")
	tmp := regexp.MustCompile(`mounting at (\S+)/mnt with cache`).FindStringSubmatch(out)
	if tmp != nil {
		t.Cleanup(func() { os.RemoveAll(tmp[1]) })
	}
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	t.Log(out)
	if !strings.Contains(out, "through an emulated WAN at ") || !strings.Contains(out, "over the emulated WAN (30ms RTT, 50 MB/s)") {
		t.Fatalf("no line names the link the demo ran over:\n%s", out)
	}
	if strings.Contains(out, "no emulated WAN") {
		t.Fatalf("the demo fell back as root with tc:\n%s", out)
	}
	if strings.Count(out, "generated filler standing in for the rest of a show") != 1 {
		t.Errorf("no one line saying the other shots are generated:\n%s", out)
	}
	objects, bytes := demoBucketShow(t, demoTestShow)
	if bytes != demoTestShow {
		t.Fatalf("the bucket holds %d bytes at --show-size 32MiB, want %d", bytes, demoTestShow)
	}
	show := regexp.MustCompile(`\((\d+) objects, ([^)]+)\)`).FindStringSubmatch(out)
	if show == nil || show[1] != strconv.Itoa(objects) || show[2] != size(bytes) {
		t.Fatalf("header %q, want %d objects, %s:\n%s", show, objects, size(bytes), out)
	}
	rows := demoTable(t, out)
	var names []string
	for _, r := range rows {
		names = append(names, r.name)
		if r.done < r.start {
			t.Errorf("%s: done at %v, before it could start at %v", r.name, r.done, r.start)
		}
	}
	if strings.Join(names, "|") != "jitfs cold|jitfs warm|pre-sync of the whole show" {
		t.Fatalf("rows %q:\n%s", names, out)
	}
	cold, warm, presync := rows[0], rows[1], rows[2]
	if cold.start >= presync.start {
		t.Errorf("jitfs cold's first frame could start at %v, not before the pre-sync's at %v", cold.start, presync.start)
	}
	if warm.start != 0 || warm.bytes != "0 B" {
		t.Errorf("jitfs warm on a serving mount: starts at %v, %s over the link; want at once, 0 B", warm.start, warm.bytes)
	}
	// The pre-sync moves the whole bucket, sample and filler, byte for
	// byte (over the link as printed, on disk exactly); jitfs cold only
	// what the frame reads, a small part of it.
	if presync.bytes != size(bytes) {
		t.Errorf("pre-sync moved %s over the link, the bucket holds %s", presync.bytes, size(bytes))
	}
	if tmp == nil {
		t.Fatalf("no temporary directory named:\n%s", out)
	}
	var copied demoShow
	if err := copied.walk(os.DirFS(filepath.Join(tmp[1], "presync")), nil); err != nil {
		t.Fatal(err)
	}
	if copied.objects != objects || copied.bytes != bytes {
		t.Errorf("pre-sync copied %d files, %d bytes; the bucket holds %d objects, %d bytes", copied.objects, copied.bytes, objects, bytes)
	}
	coldBytes, err := humanize.ParseBytes(cold.bytes)
	if err != nil || coldBytes == 0 || int64(coldBytes) >= bytes/4 {
		t.Errorf("jitfs cold moved %s over the link, not under a quarter of the %s bucket (%v)", cold.bytes, size(bytes), err)
	}
}

// TestDemoNoWAN is the fallback a user without root or tc sees, forced: one
// line says why there is no link and what that means for the times, and
// only the bytes table follows. It runs on the sample alone.
func TestDemoNoWAN(t *testing.T) {
	out, code := runJitfs(t, "demo", "--no-wan", "--show-size", "0")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	// --show-size 0: the sample alone, and no line about generated shots.
	if objects, bytes := demoBucketShow(t, 0); !strings.Contains(out, "("+strconv.Itoa(objects)+" objects, "+size(bytes)+")") ||
		strings.Contains(out, "generated") {
		t.Errorf("the show is not the sample's %d objects, %s, alone:\n%s", objects, size(bytes), out)
	}
	if strings.Count(out, "no emulated WAN") != 1 ||
		!strings.Contains(out, "no emulated WAN (--no-wan given): jitfs reads the emulator in-process, so the times below mean nothing; the bytes do.\n") {
		t.Fatalf("no one line saying why there is no link:\n%s", out)
	}
	if strings.Contains(out, "first frame can start") || strings.Contains(out, "emulated WAN at") {
		t.Fatalf("timings without a link:\n%s", out)
	}
	if !strings.Contains(out, "bytes over the link") || !strings.Contains(out, "frame 1001 after restart") {
		t.Fatalf("no bytes table:\n%s", out)
	}
}

func TestDemoBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--bandwidth", "fast"},
		{"demo", "--rtt", "-1s"},
		{"demo", "--show-size", "lots"},
		{"demo", "--show-size", "-1GiB"},
		// No machine this runs on has 300 TB of memory to spare.
		{"demo", "--show-size", "100TB"},
	} {
		out, code := runJitfs(t, args...)
		if code != 2 || !oneLine(out) {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
	if out, _ := runJitfs(t, "demo", "--show-size", "100TB"); !regexp.MustCompile(`^jitfs demo: usage: --show-size 91 TiB needs about 273 TiB of memory \(three times the show\), and .* is available\n$`).MatchString(out) {
		t.Errorf("--show-size 100TB: %s", out)
	}
}
