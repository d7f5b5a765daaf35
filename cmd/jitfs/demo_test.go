package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
)

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
// and the pre-sync, which can start its frame only once the whole show is
// copied, so after the cold mount could.
func TestDemoOverWAN(t *testing.T) {
	out, code := runJitfs(t, "demo", "--rtt", "30ms", "--bandwidth", "50MB/s")
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
	show := regexp.MustCompile(`\(\d+ objects, ([^)]+)\)`).FindStringSubmatch(out)
	if show == nil {
		t.Fatalf("no show size in the header:\n%s", out)
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
	// The pre-sync moves the whole show, byte for byte; jitfs cold less.
	if presync.bytes != show[1] {
		t.Errorf("pre-sync moved %s over the link, the show is %s", presync.bytes, show[1])
	}
	coldBytes, err1 := humanize.ParseBytes(cold.bytes)
	showBytes, err2 := humanize.ParseBytes(show[1])
	if err1 != nil || err2 != nil || coldBytes == 0 || coldBytes >= showBytes {
		t.Errorf("jitfs cold moved %s over the link of a %s show (%v, %v)", cold.bytes, show[1], err1, err2)
	}
}

// TestDemoNoWAN is the fallback a user without root or tc sees, forced: one
// line says why there is no link and what that means for the times, and
// only the bytes table follows.
func TestDemoNoWAN(t *testing.T) {
	out, code := runJitfs(t, "demo", "--no-wan")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
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
	} {
		out, code := runJitfs(t, args...)
		if code != 2 || !oneLine(out) {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
}
