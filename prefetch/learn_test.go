package prefetch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// TestLearnsNextFrame renders frames through a real mount with frame
// requests in between: from frames 1 and 2 the engine learns which names
// track the frame (an image sequence with an offset, a volume sequence)
// and prefetches frame 4's files when frame 3 starts.
func TestLearnsNextFrame(t *testing.T) {
	n := newNode(t, 1<<30, 4)
	n.f.SetOpenObserver(n.e.Observe)
	for f := 1; f <= 8; f++ {
		n.w.PutRandom(fmt.Sprintf("show/seq/flame.%04d.png", f+4), 50_000)
		n.w.PutRandom(fmt.Sprintf("show/vdb/smoke.%04d.vdb", f), 80_000)
	}
	n.w.PutRandom("show/tex/static.png", 10_000)
	ctx := context.Background()
	render := func(frame int) {
		fr := frame
		if _, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: "J"}, Scope: hooks.ScopeFrame, Frame: &fr}); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{fmt.Sprintf("seq/flame.%04d.png", frame+4), fmt.Sprintf("vdb/smoke.%04d.vdb", frame), "tex/static.png"} {
			if _, err := os.ReadFile(filepath.Join(n.mnt, rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	idle := func() {
		for st := n.e.Status(); st.QueueDepth > 0 || st.InFlight > 0; st = n.e.Status() {
			time.Sleep(5 * time.Millisecond)
		}
	}
	render(1)
	render(2)
	render(3)
	idle()
	// Frame 4's files came in ahead of its request: reading them costs
	// no GCS request.
	media := n.w.Proxy.MediaReqs.Load()
	for _, rel := range []string{"seq/flame.0008.png", "vdb/smoke.0004.vdb"} {
		if _, err := os.ReadFile(filepath.Join(n.mnt, rel)); err != nil {
			t.Fatal(err)
		}
	}
	if d := n.w.Proxy.MediaReqs.Load() - media; d != 0 {
		t.Errorf("frame 4's files were not prefetched: %d requests", d)
	}
	st := n.e.Status()
	// Frame 2 start predicted frame 3 from frame 1 alone (smoke.0003, the
	// name equal to the frame; the offset sequence cannot be told from one
	// frame); frame 3 start predicted flame.0008 and smoke.0004.
	if st.LearnedPredicted != 3 || st.LearnedUsed != 1 {
		t.Errorf("learned predicted %d used %d, want 3 and 1", st.LearnedPredicted, st.LearnedUsed)
	}
}
