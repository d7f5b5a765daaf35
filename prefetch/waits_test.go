package prefetch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/testworld"
)

// A waiting request's progress is in Status while it waits: its files by
// state, their bytes once sized, and the file it is still waiting on as the
// slowest; it is gone once the request returns.
func TestStatusShowsWaitProgress(t *testing.T) {
	n := newNode(t, 1<<30, 4)
	n.w.PutRandom("show/a.exr", 64<<10)
	n.w.PutRandom("show/b.exr", 128<<10)
	n.w.PutRandom("show/slow.exr", 3<<20)
	hold := func(p string) bool { return strings.HasSuffix(p, "slow.exr") }
	n.w.Proxy.HoldMedia.Store(&hold)

	done := make(chan []hooks.Result, 1)
	go func() {
		res, _ := n.e.Prefetch(context.Background(), hooks.Prefetch{RequestID: "r-7", Job: hooks.Job{ID: "j"}, Scope: hooks.ScopeFrame,
			Wait: time.Minute, Wants: wants("a.exr", "slow.exr", "b.exr", "missing.exr")})
		done <- res
	}()
	var wp hooks.WaitProgress
	testworld.WaitFor(t, "every file but the held one to end", func() bool {
		st := n.e.Status()
		if len(st.Waits) != 1 {
			return false
		}
		wp = st.Waits[0]
		return wp.ResidentFiles == 2 && wp.MissingFiles == 1 && wp.Slowest != nil && wp.Slowest.Fetching
	})
	if wp.RequestID != "r-7" || wp.Job != "j" || wp.Files != 4 || wp.FailedFiles != 0 || wp.Started == 0 {
		t.Errorf("progress %+v", wp)
	}
	if !wp.BytesKnown || wp.Bytes != 64<<10+128<<10+3<<20 || wp.BytesResident < 64<<10+128<<10 || wp.BytesResident >= wp.Bytes {
		t.Errorf("bytes %d of %d (known %v)", wp.BytesResident, wp.Bytes, wp.BytesKnown)
	}
	if s := wp.Slowest; s.Path != "slow.exr" || s.Size != 3<<20 || s.Bytes >= s.Size || s.AgeMS < 0 {
		t.Errorf("slowest %+v", s)
	}

	n.w.Proxy.HoldMedia.Store(nil)
	res := <-done
	if res[1].State != hooks.Resident {
		t.Fatalf("held file: %+v", res[1])
	}
	if st := n.e.Status(); len(st.Waits) != 0 {
		t.Errorf("waits after the request returned: %+v", st.Waits)
	}
}

// A request that does not wait has no progress to show.
func TestStatusHasNoWaitWithoutWait(t *testing.T) {
	n := newNode(t, 1<<30, 2)
	n.w.PutRandom("show/slow.exr", 64<<10)
	hold := func(p string) bool { return strings.HasSuffix(p, "slow.exr") }
	n.w.Proxy.HoldMedia.Store(&hold)
	defer n.w.Proxy.HoldMedia.Store(nil)
	if _, err := n.e.Prefetch(context.Background(), hooks.Prefetch{Scope: hooks.ScopeJob, Wants: wants("slow.exr")}); err != nil {
		t.Fatal(err)
	}
	testworld.WaitFor(t, "the fetch to start", func() bool { return n.w.Proxy.HeldMedia.Load() > 0 })
	if st := n.e.Status(); len(st.Waits) != 0 {
		t.Errorf("waits: %+v", st.Waits)
	}
}

// While every file of a waiting request is queued behind other work, its
// slowest is the first still queued, its size not known yet; releasing the
// job ends its queued files, and the wait with them.
func TestWaitProgressOfQueuedFiles(t *testing.T) {
	n := newNode(t, 1<<30, 1)
	for _, name := range []string{"busy.exr", "q1.exr", "q2.exr"} {
		n.w.PutRandom("show/"+name, 64<<10)
	}
	hold := func(p string) bool { return strings.HasSuffix(p, "busy.exr") }
	n.w.Proxy.HoldMedia.Store(&hold)
	defer n.w.Proxy.HoldMedia.Store(nil)
	ctx := context.Background()
	if _, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: "other"}, Scope: hooks.ScopeFrame, Wants: wants("busy.exr")}); err != nil {
		t.Fatal(err)
	}
	testworld.WaitFor(t, "the only worker to hold busy.exr", func() bool { return n.w.Proxy.HeldMedia.Load() > 0 })

	done := make(chan []hooks.Result, 1)
	go func() {
		res, _ := n.e.Prefetch(ctx, hooks.Prefetch{RequestID: "q", Job: hooks.Job{ID: "j"}, Scope: hooks.ScopeJob,
			Wait: time.Minute, Wants: wants("q1.exr", "q2.exr")})
		done <- res
	}()
	var wp hooks.WaitProgress
	testworld.WaitFor(t, "the waiting request in status", func() bool {
		st := n.e.Status()
		if len(st.Waits) == 1 {
			wp = st.Waits[0]
		}
		return len(st.Waits) == 1
	})
	if s := wp.Slowest; wp.Files != 2 || wp.BytesKnown || s == nil || s.Path != "q1.exr" || s.Fetching || s.Size != 0 {
		t.Errorf("progress %+v, slowest %+v", wp, wp.Slowest)
	}
	// Released, the job's queued files end (as failed), and so does the wait.
	if err := n.e.Release(ctx, hooks.Release{Job: "j", Scope: hooks.ScopeJob}); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res[0].State != hooks.Failed || res[1].State != hooks.Failed {
		t.Errorf("results after release: %+v", res)
	}
	if st := n.e.Status(); len(st.Waits) != 0 {
		t.Errorf("waits: %+v", st.Waits)
	}
}
