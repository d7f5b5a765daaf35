package prefetch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/prefetch"
)

// TestTaughtFirstFrame: one engine renders frames 1 to 3; another, taught
// what the first learned (as another node is), prefetches the files of
// its first frame, 5, at that frame's request (an offset image sequence,
// a volume sequence and a file every frame opens), and predicts frame 6
// ahead; once it has frames of its own it predicts from those.
func TestTaughtFirstFrame(t *testing.T) {
	put := func(n *node) {
		for f := 1; f <= 8; f++ {
			n.w.PutRandom(fmt.Sprintf("show/seq/flame.%04d.png", f+4), 50_000)
			n.w.PutRandom(fmt.Sprintf("show/vdb/smoke.%04d.vdb", f), 80_000)
		}
		n.w.PutRandom("show/tex/static.png", 10_000)
	}
	ctx := context.Background()
	files := func(frame int) []string {
		return []string{fmt.Sprintf("seq/flame.%04d.png", frame+4), fmt.Sprintf("vdb/smoke.%04d.vdb", frame), "tex/static.png"}
	}
	render := func(n *node, frame int, read bool) {
		t.Helper()
		fr := frame
		if _, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: "J"}, Scope: hooks.ScopeFrame, Frame: &fr}); err != nil {
			t.Fatal(err)
		}
		if !read {
			return
		}
		for _, rel := range files(frame) {
			if _, err := os.ReadFile(filepath.Join(n.mnt, rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	idle := func(n *node) {
		testworld.WaitFor(t, "the prefetch queue to drain", func() bool {
			st := n.e.Status()
			return st.QueueDepth == 0 && st.InFlight == 0
		})
	}

	a := newNode(t, 1<<30, 4)
	a.f.SetOpenObserver(a.e.Observe)
	put(a)
	for f := 1; f <= 3; f++ {
		render(a, f, true)
	}
	k := a.e.FrameKnowledge("J")
	want := []prefetch.FrameFile{
		{Parts: []string{"seq/flame.", ".png"}, Runs: []prefetch.FrameRun{{Off: 4, Width: 4}}},
		{Parts: []string{"tex/static.png"}},
		{Parts: []string{"vdb/smoke.", ".vdb"}, Runs: []prefetch.FrameRun{{Off: 0, Width: 4}}},
	}
	if !reflect.DeepEqual(k, want) {
		t.Fatalf("frame knowledge %+v, want %+v", k, want)
	}
	if err := prefetch.ValidateFrameFiles(k); err != nil {
		t.Fatal(err)
	}

	b := newNode(t, 1<<30, 4)
	b.f.SetOpenObserver(b.e.Observe)
	put(b)
	b.e.TeachFrames(k)
	render(b, 5, false)
	idle(b)
	media := b.w.Proxy.MediaReqs.Load()
	for _, rel := range files(5) {
		if _, err := os.ReadFile(filepath.Join(b.mnt, rel)); err != nil {
			t.Fatal(err)
		}
	}
	if d := b.w.Proxy.MediaReqs.Load() - media; d != 0 {
		t.Fatalf("the taught engine's first frame cost %d data requests: its files were not prefetched", d)
	}
	// Frame 5's three files and frame 6's two sequence frames (the static
	// file is resident); every one of frame 5's was opened.
	if p, u := b.e.SharedStats(); p != 5 || u != 3 {
		t.Fatalf("taught predictions %d, used %d; want 5 and 3", p, u)
	}
	render(b, 6, true)
	render(b, 7, false)
	if p, u := b.e.SharedStats(); p != 5 || u != 5 {
		t.Fatalf("after frames of its own: taught predictions %d, used %d; want 5 and 5", p, u)
	}
	if st := b.e.Status(); st.LearnedPredicted == 0 {
		t.Fatal("frame 7 was not predicted from the engine's own frames")
	}
}

func TestValidateFrameFiles(t *testing.T) {
	ok := prefetch.FrameFile{Parts: []string{"a.", ".exr"}, Runs: []prefetch.FrameRun{{Off: 0, Width: 4}}}
	if err := prefetch.ValidateFrameFiles([]prefetch.FrameFile{ok}); err != nil {
		t.Fatal(err)
	}
	if p, _ := ok.At(7); p != "a.0007.exr" {
		t.Fatalf("At(7) = %q", p)
	}
	if _, ok := ok.At(-1); ok {
		t.Fatal("a negative frame number was given a name")
	}
	for _, bad := range [][]prefetch.FrameFile{
		{{Parts: []string{"a", "b"}}},
		{{Parts: []string{""}}},
		{{Parts: []string{"../etc/passwd"}}},
		{{Parts: []string{"/abs"}}},
		{{Parts: []string{"a", "b"}, Runs: []prefetch.FrameRun{{Off: 0, Width: 12}}}},
		make([]prefetch.FrameFile, prefetch.MaxFrameFiles+1),
	} {
		if err := prefetch.ValidateFrameFiles(bad); err == nil {
			t.Errorf("%+v accepted", bad[0])
		}
	}
}
