package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
)

// progressLine is one plain progress line: files and bytes done of their
// totals (no bytes before any file's size is known), or, counted in files,
// the bytes done alone ("durable").
var progressLine = regexp.MustCompile(`^(jitfs \w+): (?:(?:gave up|interrupted) after [^:]*: )?(\d+)/(\d+) files?(?:, ([0-9.]+ \w*B)(?:/(?:>=)?([0-9.]+ \w*B)| durable))?`)

type progressCounts struct {
	files, of   int
	bytes, size uint64
}

// progressLines parses a command's stderr into its progress lines; any
// other line fails the test.
func progressLines(t *testing.T, verb, stderr string) []progressCounts {
	t.Helper()
	var out []progressCounts
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		m := progressLine.FindStringSubmatch(l)
		if m == nil || m[1] != verb {
			t.Fatalf("not a %s progress line: %q\nstderr:\n%s", verb, l, stderr)
		}
		var c progressCounts
		c.files, _ = strconv.Atoi(m[2])
		c.of, _ = strconv.Atoi(m[3])
		if m[4] != "" {
			c.bytes, _ = humanize.ParseBytes(m[4])
			c.size = c.bytes // "durable": the bytes done are all there is
		}
		if m[5] != "" {
			c.size, _ = humanize.ParseBytes(m[5])
		}
		out = append(out, c)
	}
	return out
}

// checkGrowing fails unless the lines' files and bytes done never go back
// and the last line has every file and byte done.
func checkGrowing(t *testing.T, lines []progressCounts, files int, size uint64, stderr string) {
	t.Helper()
	for i := 1; i < len(lines); i++ {
		if lines[i].files < lines[i-1].files || lines[i].bytes < lines[i-1].bytes {
			t.Errorf("progress went back at line %d:\n%s", i+1, stderr)
		}
	}
	// The lines round sizes to three digits.
	last := lines[len(lines)-1]
	if last.files != files || last.of != files || last.bytes != last.size || last.size < size-size/100 || last.size > size+size/100 {
		t.Errorf("last line %+v, want %d files and %d bytes done:\n%s", last, files, size, stderr)
	}
}

// fastProgress makes the commands poll and write plain lines often, so a
// short wait shows several.
func fastProgress(t *testing.T) {
	poll, every := progressPoll, progressEvery
	progressPoll, progressEvery = 20*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { progressPoll, progressEvery = poll, every })
}

// `jitfs prefetch --wait` with stderr in a log (not a terminal) writes
// plain progress lines while the files arrive over a slow link, naming the
// file it is still waiting for, and a last line with everything done;
// stdout has only the result.
func TestPrefetchWaitShowsProgress(t *testing.T) {
	w := newWorld(t, false)
	var total uint64
	for _, name := range []string{"a", "b", "c"} {
		w.PutRandom("show/plates/"+name+".1001.exr", 1<<20)
		total += 1 << 20
	}
	w.PutRandom("show/plates/held.1001.exr", 2<<20)
	total += 2 << 20
	d := w.mountForTest("show", "")
	w.Proxy.MediaRate.Store(4 << 20)
	hold := func(p string) bool { return strings.HasSuffix(p, "held.1001.exr") }
	w.Proxy.HoldMedia.Store(&hold)
	defer w.Proxy.HoldMedia.Store(nil)
	fastProgress(t)

	var stdout bytes.Buffer
	var stderr testworld.Buffer
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		done <- runPrefetch([]string{"--socket", hooks.DefaultSocket(d.mnt), "--wait", "5m", "--job", "j1", d.path("plates")}, &stdout, &stderr)
	}()
	// Run first on a failure: the command ends before its settings go.
	t.Cleanup(func() {
		w.Proxy.HoldMedia.Store(nil)
		<-finished
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})
	testworld.WaitFor(t, "a progress line waiting on the held file", func() bool {
		return strings.Contains(stderr.String(), "3/4 files, 3.0 MiB/5.0 MiB") && strings.Contains(stderr.String(), "slowest: plates/held.1001.exr (")
	})
	w.Proxy.HoldMedia.Store(nil)
	if err := <-done; err != nil {
		t.Fatalf("prefetch: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	lines := progressLines(t, "jitfs prefetch", stderr.String())
	checkGrowing(t, lines, 4, total, stderr.String())
	if !strings.Contains(stdout.String(), "4 resident") || strings.Contains(stdout.String(), "files, ") {
		t.Errorf("stdout: %q", stdout.String())
	}

	// --json keeps stderr and stdout free of progress, as does a request
	// that does not wait.
	for _, args := range [][]string{{"--wait", "5m", "--json"}, {}} {
		stdout.Reset()
		var stderr bytes.Buffer
		args = append(args, "--socket", hooks.DefaultSocket(d.mnt), "--job", "j1", d.path("plates"))
		if err := runPrefetch(args, &stdout, &stderr); err != nil || stderr.Len() != 0 {
			t.Errorf("prefetch %v: %v; stderr %q", args, err, stderr.String())
		}
	}
}

// `jitfs flush --wait` with stderr in a log writes plain progress lines
// while uploads are held back, naming the output that has waited longest,
// and a last line with every output durable. It counts files, not a byte
// bar stuck at 0%: no upload's bytes are reported until it is durable.
func TestFlushWaitShowsProgress(t *testing.T) {
	w := newWorld(t, false)
	w.Proxy.UploadOutage.Store(true)
	defer w.Proxy.UploadOutage.Store(false)
	d := w.outputForTest("jobs/p/out", "")
	if err := os.MkdirAll(d.path("beauty"), 0o755); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for i := 1001; i <= 1003; i++ {
		if err := writeFrame(d.path("beauty"), fmt.Sprintf("b.%d.exr", i), testworld.RandBytes(fmt.Sprint(i), 300_000)); err != nil {
			t.Fatal(err)
		}
		total += 300_000
	}
	fastProgress(t)

	var stdout bytes.Buffer
	var stderr testworld.Buffer
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		done <- runFlush([]string{"--wait", "--timeout", "5m", d.mnt}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		w.Proxy.UploadOutage.Store(false)
		<-finished
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})
	testworld.WaitFor(t, "a progress line naming a held upload", func() bool {
		return strings.Contains(stderr.String(), "0/3 files, 0 B durable") && strings.Contains(stderr.String(), "slowest: "+d.path("beauty/b.100"))
	})
	w.Proxy.UploadOutage.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("flush: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	lines := progressLines(t, "jitfs flush", stderr.String())
	checkGrowing(t, lines, 3, total, stderr.String())
	if !strings.Contains(stdout.String(), "every output is durable") {
		t.Errorf("stdout: %q", stdout.String())
	}
}

// SIGINT during `jitfs prefetch --wait` ends the wait as its running out
// does: a last progress line saying it was interrupted and what is left,
// one plain message, and exit 75 (still pending), not the client's
// "interrupt signal received" and 1.
func TestPrefetchWaitInterrupted(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/plates/held.1001.exr", 1<<20)
	d := w.mountForTest("show", "")
	hold := func(p string) bool { return strings.HasSuffix(p, "held.1001.exr") }
	w.Proxy.HoldMedia.Store(&hold)
	t.Cleanup(func() { w.Proxy.HoldMedia.Store(nil) })

	var stdout, stderr testworld.Buffer
	cmd := testworld.Command(context.Background(), "prefetch", "--socket", hooks.DefaultSocket(d.mnt), "--wait", "5m", d.path("plates/held.1001.exr"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	startChild(t, cmd)
	// A plain line (every 5 s in a log) says the child has polled the
	// wait's progress, so it knows how many files are left.
	testworld.WaitFor(t, "a progress line", func() bool { return strings.Contains(stderr.String(), "jitfs prefetch: 0/1 file") })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	out := stderr.String()
	if code := cmd.ProcessState.ExitCode(); code != exitPrefetchPending ||
		!regexp.MustCompile(`(?m)^jitfs prefetch: interrupted after \S+: 0/1 file, .*1 file pending`).MatchString(out) ||
		!strings.HasSuffix(out, "\njitfs prefetch: interrupted; 1 file still pending\n") || strings.Contains(out, "signal received") {
		t.Errorf("exit %d, stderr:\n%s", code, out)
	}
}
