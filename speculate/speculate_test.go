package speculate_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	waitFor(t, "frames 1003 and 1004 fetched ahead", func() bool { return f.has(frame(1003)) && f.has(frame(1004)) })
	if f.has(frame(1001)) || f.has(frame(1002)) {
		t.Fatal("fetched what the reader had opened already")
	}
	for n := 1003; n <= 1020; n++ {
		waitFor(t, "the next frame ahead", func() bool { return f.has(frame(n)) })
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
	waitFor(t, "frame 1005 ahead", func() bool { return f.has(frame(1005)) })
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
	waitFor(t, "predictions", func() bool { return s.Stats.Predicted.Load() >= 2 })
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
