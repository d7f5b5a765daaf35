package main

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// TestSpeculationSiblings: a reader walking an image sequence with no
// hooks gets the next frames fetched before it opens them (requests seen
// at the proxy before the opens), reads the right bytes, and the status
// counts every prediction used or wasted; --speculate none does nothing.
func TestSpeculationSiblings(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{}
	frame := func(n int) string { return fmt.Sprintf("seq/plate.%04d.exr", n) }
	for n := 1001; n <= 1040; n++ {
		want[frame(n)] = w.PutRandom("show/"+frame(n), 50_000+n)
	}
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d := w.mountForTest("show", "", "--socket", sock)
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	for _, n := range []int{1001, 1002} {
		mustEqualBytes(t, frame(n), mustRead(t, d.path(frame(n))), want[frame(n)])
	}
	// Frames 1003 and on are fetched while the reader is still on 1002.
	waitFor(t, "frames fetched ahead of the reader", 2*time.Minute, func() bool { return w.Proxy.MediaReqs.Load() >= 2+4 })
	for n := 1003; n <= 1040; n++ {
		mustEqualBytes(t, frame(n), mustRead(t, d.path(frame(n))), want[frame(n)])
	}
	// Each frame crossed the link once, whoever fetched it.
	if got := w.Proxy.MediaReqs.Load(); got != 40 {
		t.Fatalf("%d data requests for 40 frames", got)
	}
	var sp *hooks.SpeculationStatus
	waitFor(t, "the speculator idle", time.Minute, func() bool {
		sp = jitfsStatus(t, sock).Speculation
		return sp != nil && sp.Fetched == sp.Predicted
	})
	if sp.Used < 30 || sp.Used+sp.Wasted > sp.Predicted || sp.Predicted > 38 {
		t.Fatalf("speculation %+v: 38 frames could be predicted, at least 30 of them read ahead", *sp)
	}
	d.Stop()

	// Off: nothing is predicted however orderly the reader.
	w2 := newWorld(t, false)
	for n := 1001; n <= 1010; n++ {
		w2.PutRandom("show/"+frame(n), 1000)
	}
	sock2 := filepath.Join(t.TempDir(), "hooks.sock")
	d2 := w2.mountForTest("show", "", "--socket", sock2, "--speculate", "none")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock2); return err == nil })
	for n := 1001; n <= 1010; n++ {
		mustRead(t, d2.path(frame(n)))
	}
	if got := w2.Proxy.MediaReqs.Load(); got != 10 {
		t.Fatalf("speculation off: %d data requests for 10 frames read", got)
	}
	if sp := jitfsStatus(t, sock2).Speculation; sp != nil {
		t.Fatalf("speculation off, yet status reports %+v", *sp)
	}
}

// recordMedia records the object path of every data request crossing the
// proxy, holding none.
func recordMedia(w *world) func() map[string]int {
	var mu sync.Mutex
	seen := map[string]int{}
	hold := func(p string) bool {
		mu.Lock()
		seen[p]++
		mu.Unlock()
		return false
	}
	w.Proxy.HoldMedia.Store(&hold)
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

// TestSpeculationSequencesAcrossProcesses: a comp reading its plate and
// its matte side by side, one `cat` process per frame (a shell loop, one
// stream however many processes), gets both sequences fetched ahead
// (requests at the proxy before the opens), reads the right bytes, and
// every prediction is accounted for exactly: each file crossed the link
// once, and the data requests are the predictions plus the opens nobody
// predicted.
func TestSpeculationSequencesAcrossProcesses(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{}
	plate := func(n int) string { return fmt.Sprintf("comp/plate.%04d.exr", n) }
	matte := func(n int) string { return fmt.Sprintf("comp/matte.%04d.exr", n) }
	for n := 1001; n <= 1030; n++ {
		want[plate(n)] = w.PutRandom("show/"+plate(n), 40_000+n)
		want[matte(n)] = w.PutRandom("show/"+matte(n), 20_000+n)
	}
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d := w.mountForTest("show", "", "--socket", sock, "--speculate", "sequences")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	media := recordMedia(w)
	frame := func(n int) {
		t.Helper()
		out, err := exec.Command("cat", d.path(plate(n)), d.path(matte(n))).Output()
		if err != nil {
			t.Fatalf("cat frame %d: %v", n, err)
		}
		mustEqualBytes(t, fmt.Sprintf("frame %d", n), out, append(append([]byte{}, want[plate(n)]...), want[matte(n)]...))
	}
	frame(1001)
	frame(1002)
	// Frames 1003 and 1004 of both sequences cross the link while the
	// reader is still on 1002.
	waitFor(t, "both sequences fetched ahead of the reader", 2*time.Minute, func() bool {
		m := media()
		for _, p := range []string{plate(1003), plate(1004), matte(1003), matte(1004)} {
			if !hasObject(m, p) {
				return false
			}
		}
		return true
	})
	for n := 1003; n <= 1030; n++ {
		frame(n)
	}
	var sp *hooks.SpeculationStatus
	waitFor(t, "the speculator idle", time.Minute, func() bool {
		sp = jitfsStatus(t, sock).Speculation
		return sp != nil && sp.Fetched == sp.Predicted
	})
	m := media()
	for p, n := range m {
		if n != 1 {
			t.Fatalf("%s crossed the link %d times", p, n)
		}
	}
	const opened = 60
	if got := int64(len(m)); got != sp.Predicted+opened-sp.Used {
		t.Fatalf("%d data requests, but %d predicted + %d opened unpredicted (status %+v)", got, sp.Predicted, opened-sp.Used, *sp)
	}
	if sp.Used < 48 || sp.Kinds["sequences"] != sp.Predicted || sp.Kinds["siblings"] != 0 {
		t.Fatalf("speculation %+v: 56 frames could be read ahead by the sequences kind alone", *sp)
	}
	if sp.UsedBytes+sp.WastedBytes > sp.Bytes {
		t.Fatalf("bytes: used %d + wasted %d > predicted %d", sp.UsedBytes, sp.WastedBytes, sp.Bytes)
	}
}

func hasObject(media map[string]int, rel string) bool {
	for p := range media {
		if strings.HasSuffix(p, "/show/"+rel) {
			return true
		}
	}
	return false
}

// TestSpeculationStopsAndNeverHoldsUpAReader: a reader that keeps jumping
// past what was fetched ahead of it stops the stream (status counts it),
// with every prediction used, wasted or still ahead; and while the link
// holds every fetch ahead, a reader's own reads and a hook's prefetch go
// through.
func TestSpeculationStopsAndNeverHoldsUpAReader(t *testing.T) {
	w := newWorld(t, false)
	frame := func(n int) string { return fmt.Sprintf("seq/f.%04d.exr", n) }
	for n := 1000; n < 1400; n++ {
		w.PutRandom("show/"+frame(n), 2000)
	}
	want := w.PutRandom("show/tex/wall.exr", 3<<20)
	w.PutRandom("show/tex/floor.exr", 1<<20)
	for n := 1; n <= 40; n++ {
		w.PutRandom(fmt.Sprintf("show/seq2/g.%04d.exr", n), 1000)
	}
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d := w.mountForTest("show", "", "--socket", sock)
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	media := recordMedia(w)
	opened := map[string]bool{}
	open := func(n int) {
		t.Helper()
		mustRead(t, d.path(frame(n)))
		opened[frame(n)] = true
	}
	// Two in order, then a jump past what was fetched ahead, again and again.
	open(1000)
	open(1001)
	waitFor(t, "the first prediction", time.Minute, func() bool {
		sp := jitfsStatus(t, sock).Speculation
		return sp != nil && sp.Predicted > 0
	})
	for n := 1050; n < 1390; n += 20 {
		open(n)
		open(n + 1)
	}
	var sp *hooks.SpeculationStatus
	waitFor(t, "the speculator idle", time.Minute, func() bool {
		sp = jitfsStatus(t, sock).Speculation
		return sp != nil && sp.Fetched == sp.Predicted
	})
	if sp.Stopped == 0 {
		t.Fatalf("never stopped: %+v", *sp)
	}
	m := media()
	if got := int64(len(m)); got != sp.Predicted+int64(len(opened))-sp.Used {
		t.Fatalf("%d data requests, but %d predicted + %d opened unpredicted (status %+v)", got, sp.Predicted, int64(len(opened))-sp.Used, *sp)
	}
	if sp.Predicted > 60 {
		t.Fatalf("%d predicted for a reader that never read on", sp.Predicted)
	}

	// The link now holds every fetch ahead of a new stream.
	before := w.Proxy.HeldMedia.Load()
	holdAhead := func(p string) bool {
		return strings.Contains(p, "/seq2/") && !strings.HasSuffix(p, "g.0001.exr") && !strings.HasSuffix(p, "g.0002.exr")
	}
	w.Proxy.HoldMedia.Store(&holdAhead)
	t.Cleanup(func() { w.Proxy.HoldMedia.Store(nil) })
	mustRead(t, d.path("seq2/g.0001.exr"))
	mustRead(t, d.path("seq2/g.0002.exr"))
	waitFor(t, "fetches ahead held on the link", time.Minute, func() bool { return w.Proxy.HeldMedia.Load() > before })
	// A reader's read of another file, and a hook's prefetch, while those
	// fetches are held.
	mustEqualBytes(t, "tex/wall.exr", mustRead(t, d.path("tex/wall.exr")), want)
	out, code := runJitfs(t, "prefetch", "--socket", sock, "--wait", "120s", "--job", "j1", d.path("tex/floor.exr"))
	if code != 0 {
		t.Fatalf("prefetch while speculation is held: exit %d\n%s", code, out)
	}
	if st := jitfsStatus(t, sock).Speculation; st.Fetched == st.Predicted {
		t.Fatalf("the held fetches ahead finished: the test held nothing (%+v)", *st)
	}
	w.Proxy.HoldMedia.Store(nil)
}

// TestSpeculationDirectoryWalker: a walker reading a tree directory after
// directory (one `cat` per directory, in listing order) gets each next
// directory's first files fetched before it gets there (requests at the
// proxy before the opens), and reads the right bytes.
func TestSpeculationDirectoryWalker(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{}
	file := func(d, f int) string { return fmt.Sprintf("lib/d%02d/t%03d.tx", d, f) }
	for d := range 4 {
		for f := range 12 {
			want[file(d, f)] = w.PutRandom("show/"+file(d, f), 30_000+f)
		}
	}
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d := w.mountForTest("show", "", "--socket", sock, "--speculate", "siblings")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	media := recordMedia(w)
	walk := func(dir int) {
		t.Helper()
		var wantAll []byte
		var paths []string
		for f := range 12 {
			paths = append(paths, d.path(file(dir, f)))
			wantAll = append(wantAll, want[file(dir, f)]...)
		}
		out, err := exec.Command("cat", paths...).Output()
		if err != nil {
			t.Fatalf("cat directory %d: %v", dir, err)
		}
		mustEqualBytes(t, fmt.Sprintf("directory %d", dir), out, wantAll)
	}
	walk(0)
	walk(1)
	waitFor(t, "the next directory's first files fetched before the walker gets there", 2*time.Minute, func() bool {
		m := media()
		return hasObject(m, file(2, 0)) && hasObject(m, file(2, 1))
	})
	walk(2)
	walk(3)
	for p, n := range media() {
		if n != 1 {
			t.Fatalf("%s crossed the link %d times", p, n)
		}
	}
	// The names carry numbers (t000.tx…), yet with only siblings on the
	// sequences kind predicted nothing.
	var sp *hooks.SpeculationStatus
	waitFor(t, "the speculator idle", time.Minute, func() bool {
		sp = jitfsStatus(t, sock).Speculation
		return sp != nil && sp.Fetched == sp.Predicted
	})
	if sp.Kinds["sequences"] != 0 || sp.Kinds["coopen"] != 0 || sp.Kinds["siblings"] == 0 {
		t.Fatalf("only siblings on, yet predictions by kind %v", sp.Kinds)
	}
}
