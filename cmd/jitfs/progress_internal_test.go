package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// fakeClock is the reporter's clock, moved by the test.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }
func mib(n float64) int64                    { return int64(n * (1 << 20)) }
func lines(b *bytes.Buffer) []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}
func snap(files, done int, by, byDone int64) progressSnap {
	return progressSnap{Files: files, FilesDone: done, Bytes: by, BytesDone: byDone, BytesKnown: true}
}

// Not on a terminal, a plain line every progressEvery (and none between),
// with the rate over the recent polls and the time left at that rate, and
// a last line with the whole wait's rate and time.
func TestProgressPlainLines(t *testing.T) {
	var out bytes.Buffer
	c := newFakeClock()
	p := newProgress("jitfs prefetch", &out, c.now)
	if p.bar != nil {
		t.Fatal("a buffer is not a terminal")
	}
	c.advance(time.Second)
	p.update(snap(4, 1, mib(4), mib(1)))
	if out.Len() != 0 {
		t.Fatalf("a line before %v: %q", progressEvery, out.String())
	}
	c.advance(4 * time.Second)
	s := snap(4, 2, mib(4), mib(2))
	s.Slowest = &slowItem{Path: "plates/c.1001.exr", Done: 512 << 10, Size: mib(1), Age: 3 * time.Second}
	p.update(s)
	c.advance(time.Second)
	p.update(snap(4, 2, mib(4), mib(2.5)))
	c.advance(2 * time.Second)
	p.finish(snap(4, 4, mib(4), mib(4)))
	want := []string{
		"jitfs prefetch: 2/4 files, 2.0 MiB/4.0 MiB, 256 KiB/s, 8s left, slowest: plates/c.1001.exr (512 KiB/1.0 MiB, 3s)",
		"jitfs prefetch: 4/4 files, 4.0 MiB/4.0 MiB, 512 KiB/s, in 8s",
	}
	if got := lines(&out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// What is shown never goes back (a failed fetch takes back its partial
// bytes); totals not all known yet are shown as a floor; missing and
// failed files are counted, and the time left is then by files.
func TestProgressText(t *testing.T) {
	c := newFakeClock()
	p := newProgress("jitfs prefetch", &bytes.Buffer{}, c.now)
	p.update(progressSnap{Files: 10, FilesDone: 2, Bytes: mib(3), BytesDone: mib(1)})
	c.advance(10 * time.Second)
	s := p.sample(progressSnap{Files: 10, FilesDone: 4, Missing: 1, Failed: 1, Bytes: mib(3), BytesDone: mib(0.5)}, c.now())
	if got, want := p.text(s, c.now(), false), "4/10 files, 1.0 MiB/>=3.0 MiB, 1 missing, 1 failed, 20s left"; got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {-time.Second, "0s"}, {412345 * time.Microsecond, "412ms"}, {1440 * time.Millisecond, "1.4s"}, {59 * time.Second, "59s"},
		{200*time.Second + 300*time.Millisecond, "3m20s"}, {2*time.Hour + 5*time.Minute + 10*time.Second, "2h5m0s"}} {
		// The form the duration flags take back.
		if got := dur(tc.d); got != tc.want {
			t.Errorf("dur(%v) = %q, want %q", tc.d, got, tc.want)
		} else if _, err := time.ParseDuration(got); err != nil {
			t.Errorf("dur(%v) = %q does not parse: %v", tc.d, got, err)
		}
	}
}

// On a terminal, a bar redrawn in place with the same words after it, and
// a newline at the end so the command's result starts a line of its own.
func TestProgressBarRendering(t *testing.T) {
	var out bytes.Buffer
	c := newFakeClock()
	p := newProgress("jitfs flush", &out, c.now)
	p.newBar(200)
	c.advance(2 * time.Second)
	s := snap(8, 2, mib(8), mib(2))
	s.Slowest = &slowItem{Path: "/out/beauty.1001.exr", State: "uploading", Size: mib(3), Age: 90 * time.Second}
	p.update(s)
	c.advance(2 * time.Second)
	s.BytesDone, s.FilesDone = mib(4), 4
	p.update(s)
	frames := strings.Split(out.String(), "\r")
	last := frames[len(frames)-1]
	for _, want := range []string{"50%", "[=========>..........]", "4/8 files, 4.0 MiB/8.0 MiB, 1.0 MiB/s, 4s left, slowest: /out/beauty.1001.exr (uploading, 3.0 MiB, 1m30s)"} {
		if !strings.Contains(last, want) {
			t.Errorf("last frame %q lacks %q", last, want)
		}
	}
	if strings.Contains(out.String(), "\n") {
		t.Errorf("a newline while drawing: %q", out.String())
	}
	c.advance(4 * time.Second)
	p.finish(snap(8, 8, mib(8), mib(8)))
	frames = strings.Split(out.String(), "\r")
	last = frames[len(frames)-1]
	if !strings.HasSuffix(last, "\n") || !strings.Contains(last, "100%") || !strings.Contains(last, "8/8 files, 8.0 MiB/8.0 MiB, 1.0 MiB/s, in 8s") {
		t.Errorf("last frame %q", last)
	}

	// A narrow terminal cuts the words, not the bar: a wrapped line would
	// be redrawn as a new line every time.
	out.Reset()
	p = newProgress("jitfs flush", &out, c.now)
	p.newBar(60)
	p.update(s)
	frames = strings.Split(out.String(), "\r")
	if last = strings.TrimRight(frames[len(frames)-1], " "); len(last) > 60 || !strings.HasSuffix(last, "~") {
		t.Errorf("frame for 60 columns (%d): %q", len(last), last)
	}
}

// The daemon's reports become the reporter's: a prefetch's wait, the
// reply that ends it, and an output area's state since the flush began.
func TestProgressSnapshots(t *testing.T) {
	s := prefetchSnap(hooks.WaitProgress{Files: 5, ResidentFiles: 2, MissingFiles: 1, Bytes: 300, BytesKnown: true, BytesResident: 120,
		Slowest: &hooks.PendingFile{Path: "a.exr", Bytes: 20, Size: 100, Fetching: true, AgeMS: 1500}})
	if s.Files != 5 || s.FilesDone != 2 || s.Missing != 1 || s.BytesDone != 120 || s.Slowest.Age != 1500*time.Millisecond || s.Slowest.State != "" {
		t.Errorf("prefetch snapshot %+v %+v", s, s.Slowest)
	}
	f := prefetchFinal(hooks.PrefetchReply{Resident: 4, Missing: []string{"/m/x"}}, s)
	if f.Files != 5 || f.FilesDone != 4 || f.BytesDone != 300 || f.Slowest != nil {
		t.Errorf("prefetch final %+v", f)
	}
	f = prefetchFinal(hooks.PrefetchReply{Resident: 3, Queued: 1, TimedOut: true}, s)
	if f.Files != 4 || f.BytesDone != 120 || f.Slowest == nil {
		t.Errorf("prefetch final after the wait ran out %+v", f)
	}

	at := time.Unix(1_800_000_100, 0)
	base := hooks.OutputStatus{DurableFiles: 10, DurableBytes: 1000}
	now := hooks.OutputStatus{DurableFiles: 13, DurableBytes: 1600, NotDurableTotal: 2, Files: map[string]int{"uploading": 1, "failed": 1},
		NotDurable: []hooks.OutputFile{{Path: "/o/b", State: "uploading", Size: 50, ClosedAt: 1_800_000_040}, {Path: "/o/a", State: "failed", Size: 70, ClosedAt: 1_800_000_030}}}
	s = flushSnap(now, base, at)
	if s.Files != 5 || s.FilesDone != 3 || s.Failed != 1 || s.BytesDone != 600 || !s.ByFiles || s.BytesKnown {
		t.Errorf("flush snapshot %+v", s)
	}
	// Counted in files: the status has no uploaded bytes of a pending
	// output, so a byte bar would sit at 0% until a file is durable.
	if f := fraction(s); f != 0.8 {
		t.Errorf("flush fraction %v, want 0.8 (3 durable and 1 failed of 5)", f)
	}
	p := newProgress("jitfs flush", &bytes.Buffer{}, newFakeClock().now)
	if got, want := p.text(p.sample(s, p.now()), p.now(), false), "3/5 files, 600 B durable, 1 failed, slowest: /o/a (failed, 70 B, 1m10s)"; got != want {
		t.Errorf("flush text %q, want %q", got, want)
	}
	if s.Slowest == nil || s.Slowest.Path != "/o/a" || s.Slowest.State != "failed" || s.Slowest.Age != 70*time.Second {
		t.Errorf("flush slowest %+v", s.Slowest)
	}
}

// On a terminal, each update draws the new words before the new
// percentage, so no frame shows a percentage with the words of the update
// before.
func TestProgressBarDrawsWordsFirst(t *testing.T) {
	var out bytes.Buffer
	c := newFakeClock()
	p := newProgress("jitfs prefetch", &out, c.now)
	p.newBar(200)
	p.update(snap(4, 1, mib(4), mib(1)))
	c.advance(time.Second)
	p.update(snap(4, 3, mib(4), mib(3)))
	for _, f := range strings.Split(out.String(), "\r") {
		if strings.Contains(f, "75%") && !strings.Contains(f, "3/4 files") {
			t.Errorf("frame with the new percentage and the old words: %q", f)
		}
	}
	if !strings.Contains(out.String(), "75%") {
		t.Errorf("no frame at 75%%: %q", out.String())
	}
}

// At 80 columns the slowest file's path gives way from the left, so its
// name still shows and the line is not cut.
func TestProgressBarShortensSlowestPath(t *testing.T) {
	var out bytes.Buffer
	c := newFakeClock()
	p := newProgress("jitfs prefetch", &out, c.now)
	p.newBar(80)
	s := snap(40, 12, 0, 0)
	s.BytesKnown = false
	s.Slowest = &slowItem{Path: "/show/seq/sh010/plates/main/v003/plate.1001.exr", Age: 14 * time.Second}
	p.update(s)
	frames := strings.Split(out.String(), "\r")
	last := strings.TrimRight(frames[len(frames)-1], " ")
	if !strings.Contains(last, "slowest: …/v003/plate.1001.exr (14s)") || strings.HasSuffix(last, "~") || len([]rune(last)) > 80 {
		t.Errorf("frame for 80 columns (%d): %q", len([]rune(last)), last)
	}
	for _, tc := range []struct {
		path string
		n    int
		want string
	}{
		{"/a/b/plate.1001.exr", 40, "/a/b/plate.1001.exr"},
		{"/show/plates/v003/plate.1001.exr", 20, "…/plate.1001.exr"},
		{"/show/plates/v003/plate.1001.exr", 10, "….1001.exr"},
	} {
		if got := shortenLeft(tc.path, tc.n); got != tc.want {
			t.Errorf("shortenLeft(%q, %d) = %q, want %q", tc.path, tc.n, got, tc.want)
		}
	}
}

// A wait that stopped short says so on its last line, with what is left,
// rather than "in 3 s", which reads as finished.
func TestProgressFinalLineStoppedShort(t *testing.T) {
	var out bytes.Buffer
	c := newFakeClock()
	p := newProgress("jitfs prefetch", &out, c.now)
	last := snap(4, 1, mib(200), mib(64))
	p.update(last)
	c.advance(3 * time.Second)
	p.finish(prefetchFinal(hooks.PrefetchReply{Resident: 1, Queued: 3, TimedOut: true}, last))
	if got, want := lines(&out)[0], "jitfs prefetch: gave up after 3s: 1/4 files, 64 MiB/200 MiB, 21 MiB/s, 3 files pending"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	out.Reset()
	p = newProgress("jitfs prefetch", &out, c.now)
	one := snap(1, 0, 0, 0)
	one.BytesKnown, one.End = false, "interrupted"
	p.finish(one)
	if got, want := lines(&out)[0], "jitfs prefetch: interrupted after 0s: 0/1 file, 1 file pending"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if got := (&interruptedError{pending: 1}).Error(); got != "interrupted; 1 file still pending" {
		t.Errorf("interrupted: %q", got)
	}
}
