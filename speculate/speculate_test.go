package speculate_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/speculate"
)

// dirLister is a fixed listing: the pure logic's input (the real
// namespace under a real mount is tested in internal/daemon and cmd/jitfs).
type dirLister map[string][]namespace.Entry

func (l dirLister) ListDir(_ context.Context, dir string) ([]namespace.Entry, error) {
	return l[dir], nil
}

func files(dir string, n int, size int64) dirLister {
	var ents []namespace.Entry
	for i := range n {
		p := fmt.Sprintf("%s/plate.%04d.exr", dir, 1001+i)
		ents = append(ents, namespace.Entry{Path: p, Attrs: gcs.Attrs{Name: p, Size: size}})
	}
	return dirLister{dir: ents}
}

// fetched records what the Speculator fetched.
type fetched struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (f *fetched) fetch(_ context.Context, e namespace.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[e.Path] = true
	return nil
}

func (f *fetched) has(p string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[p]
}

func frame(n int) string { return fmt.Sprintf("seq/plate.%04d.exr", n) }

// A reader moving through a sequence gets the next frames fetched before
// it opens them; opening them counts them used.
func TestSequenceReadAhead(t *testing.T) {
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(files("seq", 100, 1000), f.fetch, speculate.Options{Siblings: true})
	defer s.Close()
	s.Opened(frame(1001))
	s.Opened(frame(1002))
	testworld.WaitFor(t, "frames 1003 and 1004 fetched ahead", func() bool { return f.has(frame(1003)) && f.has(frame(1004)) })
	if f.has(frame(1001)) || f.has(frame(1002)) {
		t.Fatal("fetched what the reader had opened already")
	}
	for n := 1003; n <= 1020; n++ {
		testworld.WaitFor(t, "the next frame ahead", func() bool { return f.has(frame(n)) })
		s.Opened(frame(n))
	}
	if used := s.Stats.Used.Load(); used != 18 {
		t.Fatalf("used %d predictions, want 18 (1003-1020)", used)
	}
	// The depth grew while predictions were read.
	if p := s.Stats.Predicted.Load(); p < 30 {
		t.Fatalf("only %d predicted after 18 were used: the depth did not grow", p)
	}
}

// Every second frame: the stride is followed.
func TestStride(t *testing.T) {
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(files("seq", 100, 1000), f.fetch, speculate.Options{Siblings: true})
	defer s.Close()
	s.Opened(frame(1001))
	s.Opened(frame(1003))
	testworld.WaitFor(t, "frame 1005 ahead", func() bool { return f.has(frame(1005)) })
	if f.has(frame(1004)) {
		t.Fatal("fetched a frame off the stride")
	}
}

// Random opens never look like a stream; a stream whose predictions go
// unread stops, and its waste is counted exactly.
func TestMissesStopAndWasteIsCounted(t *testing.T) {
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(files("seq", 400, 1000), f.fetch, speculate.Options{Siblings: true, MaxAhead: 4, Misses: 4})
	for _, n := range []int{1050, 1010, 1090, 1030, 1170, 1002} {
		s.Opened(frame(n))
	}
	// A reader that reads two in order, then jumps past what was
	// predicted, again and again, wastes it.
	s.Opened(frame(1200))
	s.Opened(frame(1201))
	testworld.WaitFor(t, "predictions", func() bool { return s.Stats.Predicted.Load() >= 2 })
	for n := 1210; n < 1390; n += 10 {
		s.Opened(frame(n))
		s.Opened(frame(n + 1))
	}
	s.Close()
	st := &s.Stats
	if st.Used.Load()+st.Wasted.Load() != st.Predicted.Load() {
		t.Fatalf("predicted %d = used %d + wasted %d does not hold", st.Predicted.Load(), st.Used.Load(), st.Wasted.Load())
	}
	if st.Stopped.Load() == 0 {
		t.Fatalf("the stream never stopped after %d wasted predictions", st.Wasted.Load())
	}
	if st.Predicted.Load() > 40 {
		t.Fatalf("%d predicted for a reader that never read one of them in order", st.Predicted.Load())
	}
}

// Off, it does nothing.
func TestOff(t *testing.T) {
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(files("seq", 100, 1000), f.fetch, speculate.Options{})
	for n := 1001; n < 1010; n++ {
		s.Opened(frame(n))
	}
	s.Close()
	if s.Stats.Predicted.Load() != 0 || len(f.seen) != 0 {
		t.Fatalf("disabled, it predicted %d and fetched %d", s.Stats.Predicted.Load(), len(f.seen))
	}
}

// names lists a directory of files named by fmt patterns over frames.
func names(dir string, size int64, frames []int, patterns ...string) dirLister {
	var ents []namespace.Entry
	for _, pat := range patterns {
		for _, n := range frames {
			p := dir + "/" + fmt.Sprintf(pat, n)
			ents = append(ents, namespace.Entry{Path: p, Attrs: gcs.Attrs{Name: p, Size: size}})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Path < ents[j].Path })
	return dirLister{dir: ents}
}

func seq(first, last int) []int {
	var fs []int
	for n := first; n <= last; n++ {
		fs = append(fs, n)
	}
	return fs
}

// Two sequences read frame by frame side by side (a comp reading its plate
// and its matte) are two streams; siblings alone follow only one, since
// the reader hops between two runs of the listing at every open.
func TestInterleavedSequences(t *testing.T) {
	l := names("sh", 1000, seq(1001, 1100), "matte.%04d.exr", "plate.%04d.exr")
	for _, kinds := range []speculate.Options{{Siblings: true}, {Sequences: true}} {
		f := &fetched{seen: map[string]bool{}}
		kinds.MaxAhead = 8
		s := speculate.New(l, f.fetch, kinds)
		s.Opened("sh/plate.1000.exr") // not in the listing: only lists it
		s.Settle(context.Background())
		for n := 1001; n <= 1030; n++ {
			s.Opened(fmt.Sprintf("sh/plate.%04d.exr", n))
			s.Opened(fmt.Sprintf("sh/matte.%04d.exr", n))
			s.Settle(context.Background())
		}
		s.Close()
		st := &s.Stats
		if kinds.Siblings {
			// Siblings follow the run of the listing furthest on; the
			// other is behind its frontier.
			if f.has("sh/matte.1031.exr") {
				t.Fatal("siblings followed both runs of the listing")
			}
			continue
		}
		if st.Used.Load() < 50 {
			t.Fatalf("sequences: %d of 58 frames read ahead (%+v)", st.Used.Load(), st.Predicted.Load())
		}
		if st.Used.Load()+st.Wasted.Load() != st.Predicted.Load() || st.Sequences.Load() != st.Predicted.Load() {
			t.Fatalf("predicted %d = used %d + wasted %d (sequences %d) does not hold", st.Predicted.Load(), st.Used.Load(), st.Wasted.Load(), st.Sequences.Load())
		}
		if !f.has("sh/plate.1031.exr") || !f.has("sh/matte.1031.exr") {
			t.Fatal("the frame after the last read was not fetched for either sequence")
		}
	}
}

// UDIM tiles skip numbers (1001-1004, 1011-1014): the sequence follows
// the tiles that exist; unpadded frame numbers sort out of order in the
// listing and are still one sequence.
func TestSequenceGapsAndPadding(t *testing.T) {
	l := names("tex", 1000, []int{1001, 1002, 1003, 1004, 1011, 1012, 1013, 1014}, "ground.%d.png")
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(l, f.fetch, speculate.Options{Sequences: true})
	s.Opened("tex/ground.1001.png")
	s.Opened("tex/ground.1002.png")
	testworld.WaitFor(t, "tiles ahead", func() bool { return f.has("tex/ground.1004.png") && f.has("tex/ground.1011.png") })
	s.Close()

	l = names("seq", 10, seq(1, 30), "f%d.png")
	f = &fetched{seen: map[string]bool{}}
	s = speculate.New(l, f.fetch, speculate.Options{Sequences: true})
	s.Opened("seq/f8.png")
	s.Opened("seq/f9.png")
	testworld.WaitFor(t, "frames 10 and 11 ahead of frame 9", func() bool { return f.has("seq/f10.png") && f.has("seq/f11.png") })
	s.Close()
}

// With siblings and sequences both on, a plain sequence is fetched once,
// not twice as far ahead, and every prediction is credited once.
func TestKindsShareOneDirectory(t *testing.T) {
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(files("seq", 100, 1000), f.fetch, speculate.Options{Siblings: true, Sequences: true, MaxAhead: 4})
	s.Opened(frame(1001))
	s.Opened(frame(1002))
	s.Settle(context.Background())
	if p := s.Stats.Predicted.Load(); p > 4 {
		t.Fatalf("%d predicted with a depth of 4", p)
	}
	for n := 1003; n <= 1050; n++ {
		s.Opened(frame(n))
		s.Settle(context.Background())
	}
	s.Close()
	st := &s.Stats
	if st.Used.Load()+st.Wasted.Load() != st.Predicted.Load() || st.Predicted.Load() > 48+4 {
		t.Fatalf("predicted %d, used %d, wasted %d for 48 frames read", st.Predicted.Load(), st.Used.Load(), st.Wasted.Load())
	}
}

// The budget bounds what all streams together have ahead of them.
func TestBudget(t *testing.T) {
	l := dirLister{}
	for d := range 10 {
		dir := fmt.Sprintf("d%d", d)
		l[dir] = files(dir, 50, 1000)[dir]
	}
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(l, f.fetch, speculate.Options{Siblings: true, MaxAhead: 32, Budget: 10_000})
	for d := range 10 {
		// Nothing predicted is opened: what is ahead only grows.
		for n := 1001; n <= 1002; n++ {
			s.Opened(fmt.Sprintf("d%d/plate.%04d.exr", d, n))
		}
	}
	testworld.WaitFor(t, "listings", func() bool { return s.Stats.Predicted.Load() >= 10 })
	s.Settle(context.Background())
	s.Close()
	if b := s.Stats.Bytes.Load(); b > 10_000 {
		t.Fatalf("%d bytes predicted over a budget of 10000", b)
	}
	if s.Stats.WastedBytes.Load() != s.Stats.Bytes.Load()-s.Stats.UsedBytes.Load() {
		t.Fatalf("bytes: predicted %d, used %d, wasted %d", s.Stats.Bytes.Load(), s.Stats.UsedBytes.Load(), s.Stats.WastedBytes.Load())
	}
}

// A walker reading a tree directory after directory, in listing order,
// gets the first files of the next directory fetched before it gets
// there, once it has walked two; a reader of one directory does not.
func TestWalkContinuesIntoNextDirectory(t *testing.T) {
	l := dirLister{}
	for d := range 5 {
		dir := fmt.Sprintf("tree/d%02d", d)
		l["tree"] = append(l["tree"], namespace.Entry{Path: dir, IsDir: true})
		for f := range 10 {
			p := fmt.Sprintf("%s/f%03d.exr", dir, f)
			l[dir] = append(l[dir], namespace.Entry{Path: p, Attrs: gcs.Attrs{Name: p, Size: 1000}})
		}
	}
	f := &fetched{seen: map[string]bool{}}
	s := speculate.New(l, f.fetch, speculate.Options{Siblings: true})
	defer s.Close()
	walk := func(d int) {
		for n := range 10 {
			s.Opened(fmt.Sprintf("tree/d%02d/f%03d.exr", d, n))
			s.Settle(context.Background())
		}
	}
	walk(0)
	if f.has("tree/d01/f000.exr") {
		t.Fatal("one directory read in order is no walk, yet the next was fetched")
	}
	walk(1)
	testworld.WaitFor(t, "the next directory's first files", func() bool { return f.has("tree/d02/f000.exr") && f.has("tree/d02/f001.exr") })
	walk(2)
	walk(3)
	walk(4)
	s.Close()
	st := &s.Stats
	if st.Used.Load()+st.Wasted.Load() != st.Predicted.Load() || st.Wasted.Load() > 4 {
		t.Fatalf("predicted %d, used %d, wasted %d", st.Predicted.Load(), st.Used.Load(), st.Wasted.Load())
	}
}
