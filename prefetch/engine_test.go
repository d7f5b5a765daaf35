package prefetch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/jitfs"
	"github.com/jitfs/jitfs/prefetch"
)

// node is a real in-process jitfs mount (internal/daemon) reading the
// emulator through the counting proxy, and a prefetch engine on it. The
// mount has no engine of its own: each test builds the engine under test
// with its own options and a resolver that records the order of work.
type node struct {
	w   *testworld.World
	mnt string
	c   *cache.Cache
	f   *jitfs.FS
	e   *prefetch.Engine
	res *recordingResolver
}

// recordingResolver logs the order in which the engine starts files.
type recordingResolver struct {
	f     *jitfs.FS
	mu    sync.Mutex
	order []string
}

func (r *recordingResolver) Resolve(ctx context.Context, rel string) (cache.Meta, error) {
	r.mu.Lock()
	r.order = append(r.order, rel)
	r.mu.Unlock()
	return r.f.Resolve(ctx, rel)
}

func newNode(t *testing.T, budget int64, workers int) *node {
	t.Helper()
	return newNodeWith(t, budget, prefetch.Options{Workers: workers})
}

// newNodeWith is newNode with engine options (Resolver, Cache and Source
// are filled in).
func newNodeWith(t *testing.T, budget int64, eo prefetch.Options) *node {
	t.Helper()
	w := testworld.New(t, testworld.Options{Bucket: "prefetch-test"})
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.MkdirAll(mnt, 0o755)
	s, err := daemon.StartScene(context.Background(), daemon.SceneConfig{Bucket: w.Bucket, Prefix: "show/", Mountpoint: mnt,
		GCS: w.GCS, CacheDir: filepath.Join(t.TempDir(), "cache"), CacheSize: budget, Socket: "none"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	res := &recordingResolver{f: s.FS}
	eo.Resolver, eo.Cache, eo.Source = res, s.Cache, w.GCS
	e, err := prefetch.New(eo)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the engine stops before the mount
	// it resolves through.
	t.Cleanup(e.Close)
	return &node{w: w, mnt: s.Config.Mountpoint, c: s.Cache, f: s.FS, e: e, res: res}
}

func wants(rels ...string) []hooks.Want {
	var ws []hooks.Want
	for _, r := range rels {
		ws = append(ws, hooks.Want{Rel: r, Abs: "/mnt/" + r})
	}
	return ws
}

func TestPrefetchMakesResidentOnceAndReadsHit(t *testing.T) {
	n := newNode(t, 1<<30, 8)
	content := map[string][]byte{}
	var rels []string
	for i := 0; i < 20; i++ {
		rel := fmt.Sprintf("tex/t%02d.tx", i)
		content[rel] = n.w.PutRandom("show/"+rel, 64<<10)
		rels = append(rels, rel)
	}
	content["cache/big.bin"] = n.w.PutRandom("show/cache/big.bin", 10<<20)
	rels = append(rels, "cache/big.bin", "tex/missing.tx")
	ctx := context.Background()

	res, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: "j1"}, Scope: hooks.ScopeJob, Wait: time.Minute, Wants: wants(rels...)})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := hooks.Resident
		if rels[i] == "tex/missing.tx" {
			want = hooks.Missing
		}
		if r.State != want {
			t.Errorf("%s: %s (%s), want %s", rels[i], r.State, r.Err, want)
		}
	}
	media, bytesMoved := n.w.Proxy.MediaReqs.Load(), n.w.Proxy.MediaBytes.Load()
	if bytesMoved != 20*64<<10+10<<20 {
		t.Errorf("moved %d bytes for %d", bytesMoved, 20*64<<10+10<<20)
	}
	// Asking again costs no data request.
	res, _ = n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeJob, Wait: time.Minute, Wants: wants(rels[:21]...)})
	for i, r := range res {
		if r.State != hooks.Resident {
			t.Errorf("again: %s: %s", rels[i], r.State)
		}
	}
	if n.w.Proxy.MediaReqs.Load() != media {
		t.Errorf("resident files cost %d more requests", n.w.Proxy.MediaReqs.Load()-media)
	}
	// The renderer's reads are hits.
	for rel, want := range content {
		got, err := os.ReadFile(filepath.Join(n.mnt, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v", rel, err)
		}
	}
	if n.c.Stats.MissBytes.Load() != 0 || n.w.Proxy.MediaReqs.Load() != media {
		t.Errorf("reads after prefetch fetched %d bytes", n.c.Stats.MissBytes.Load())
	}
	st := n.e.Status()
	if len(st.Jobs) != 1 || st.Jobs[0].Resident != 21 || st.Jobs[0].Wanted != 21 || st.Jobs[0].Missing != 1 || st.MissingFiles != 1 || st.Jobs[0].PinnedBytes != 20*64<<10+10<<20 {
		t.Errorf("status = %+v", st)
	}
	if st.PrefetchedBytes != bytesMoved || st.HitRatio != 1 {
		t.Errorf("status prefetched %d hit ratio %v", st.PrefetchedBytes, st.HitRatio)
	}
	if err := n.e.Release(ctx, hooks.Release{Job: "j1", Scope: hooks.ScopeJob}); err != nil {
		t.Fatal(err)
	}
	if st := n.e.Status(); st.PinnedBytes != 0 || len(st.Jobs) != 0 {
		t.Errorf("after release: %+v", st)
	}
}

// TestPrefetchSharesFetches: concurrent requests for one file, and a
// renderer reading it meanwhile, fetch it once.
func TestPrefetchSharesFetches(t *testing.T) {
	n := newNode(t, 1<<30, 8)
	want := n.w.PutRandom("show/lib/props.blend", 24<<20)
	n.w.Proxy.MediaRate.Store(50 << 20) // slow enough that the requests overlap
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeFrame, Wait: time.Minute, Wants: wants("lib/props.blend")})
			if err != nil || res[0].State != hooks.Resident {
				t.Errorf("prefetch: %v %+v", err, res)
			}
		}()
	}
	got, err := os.ReadFile(filepath.Join(n.mnt, "lib/props.blend"))
	wg.Wait()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read: %v", err)
	}
	if moved := n.w.Proxy.MediaBytes.Load(); moved > 24<<20+1<<20 {
		t.Errorf("moved %d bytes for a 24 MiB file", moved)
	}
}

// TestPrefetchPriorities: with one worker busy, queued work runs highest
// band first, FIFO within a band.
func TestPrefetchPriorities(t *testing.T) {
	n := newNode(t, 1<<30, 1)
	for _, rel := range []string{"seq/a", "seq/b", "look/c", "job/d", "frame/e", "block"} {
		n.w.PutRandom("show/"+rel, 4<<10)
	}
	// The link holds every request until the rest are queued, so the
	// first request occupies the only worker however slowly this test
	// runs (a stall of fixed length could end before they are).
	n.w.Proxy.StallAll.Store(true)
	ctx := context.Background()
	n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeSequence, Wants: wants("block")})
	for st := n.e.Status(); st.InFlight != 1 || st.QueueDepth != 0 || n.w.Proxy.Held.Load() == 0; st = n.e.Status() {
		time.Sleep(time.Millisecond) // until the worker has taken it and waits on the link
	}
	n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeSequence, Wants: wants("seq/a", "seq/b")})
	n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeLookahead, Wants: wants("look/c")})
	n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeJob, Wants: wants("job/d")})
	n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeFrame, Wants: wants("frame/e")})
	n.w.Proxy.StallAll.Store(false)
	// Wait for the frame's file (this request joins the queued task).
	res, _ := n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeFrame, Wait: time.Minute, Wants: wants("frame/e")})
	if res[0].State != hooks.Resident {
		t.Fatalf("frame item: %+v", res)
	}
	res, _ = n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeSequence, Wait: time.Minute, Wants: wants("seq/b")})
	if res[0].State != hooks.Resident {
		t.Fatalf("seq item: %+v", res)
	}
	n.res.mu.Lock()
	order := fmt.Sprint(n.res.order)
	n.res.mu.Unlock()
	if order != "[block frame/e job/d look/c seq/a seq/b]" {
		t.Errorf("order = %s", order)
	}
}

// TestPinsAreBoundedAndReleased: pins never exceed their share of the
// budget, and a released frame's files are evicted first.
func TestPinsAreBoundedAndReleased(t *testing.T) {
	n := newNode(t, 8<<20, 4) // pins may hold 4 MiB
	for i := 0; i < 6; i++ {
		n.w.PutRandom(fmt.Sprintf("show/f/%d.exr", i), 1<<20)
	}
	ctx := context.Background()
	frame := 7
	res, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: "j"}, Scope: hooks.ScopeFrame, Frame: &frame, Wait: time.Minute,
		Wants: wants("f/0.exr", "f/1.exr", "f/2.exr", "f/3.exr", "f/4.exr", "f/5.exr")})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.State != hooks.Resident {
			t.Fatalf("%+v", res)
		}
	}
	st := n.e.Status()
	if st.PinnedBytes > 4<<20 || st.PinnedBytes < 3<<20 || n.e.PinRefusals.Load() == 0 {
		t.Errorf("pinned %d bytes with a 4 MiB bound, %d refusals", st.PinnedBytes, n.e.PinRefusals.Load())
	}
	other := 8
	n.e.Release(ctx, hooks.Release{Job: "j", Scope: hooks.ScopeFrame, Frame: &other})
	if n.e.Status().PinnedBytes != st.PinnedBytes {
		t.Error("releasing another frame dropped pins")
	}
	n.e.Release(ctx, hooks.Release{Job: "j", Scope: hooks.ScopeFrame, Frame: &frame})
	if got := n.e.Status().PinnedBytes; got != 0 {
		t.Errorf("after the frame's release %d bytes stay pinned", got)
	}
}

func names(pattern string, from, n int) []hooks.Want {
	var rels []string
	for i := from; i < from+n; i++ {
		rels = append(rels, fmt.Sprintf(pattern, i))
	}
	return wants(rels...)
}

// TestQueueIsBoundedAndReleaseFreesIt: with the link stalled the engine's
// one worker is stuck on its first file, so everything asked for stays
// queued. Requests past the engine's bounds are refused whole (ErrBusy) and
// counted, a frame request still fits where a job request does not,
// releasing a job drops its queued files, and names not in the bucket are
// counted, not kept.
func TestQueueIsBoundedAndReleaseFreesIt(t *testing.T) {
	n := newNodeWith(t, 1<<30, prefetch.Options{Workers: 1, MaxQueued: 4000, MaxJobFiles: 3000})
	n.w.PutRandom("show/seq/real.0001.exr", 1000)
	n.w.Proxy.StallAll.Store(true)
	ctx := context.Background()
	job := func(id string, scope hooks.Scope, ws []hooks.Want) error {
		_, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: id}, Scope: scope, Wants: ws})
		return err
	}
	// Job scopes may queue three quarters of MaxQueued.
	if err := job("flood", hooks.ScopeJob, names("seq/nope.%06d.exr", 0, 2000)); err != nil {
		t.Fatal(err)
	}
	if err := job("flood2", hooks.ScopeJob, names("seq/other.%06d.exr", 0, 2000)); !errors.Is(err, hooks.ErrBusy) {
		t.Fatalf("a job request past the queue bound: %v, want ErrBusy", err)
	}
	// A frame request still fits.
	if err := job("render", hooks.ScopeFrame, names("seq/frame.%06d.exr", 0, 1500)); err != nil {
		t.Fatalf("a frame request within the bound: %v", err)
	}
	st := n.e.Status()
	if st.RefusedFiles != 2000 || st.QueueDepth+st.InFlight != 3500 {
		t.Fatalf("refused %d files, %d queued and %d in flight; want 2000 refused and 3500 held", st.RefusedFiles, st.QueueDepth, st.InFlight)
	}
	// Releasing the flood drops its queued files (one may be in flight).
	if err := n.e.Release(ctx, hooks.Release{Job: "flood", Scope: hooks.ScopeJob}); err != nil {
		t.Fatal(err)
	}
	if st := n.e.Status(); st.QueueDepth > 1500 {
		t.Fatalf("%d files still queued after the flood's release; the render's 1500 should be all", st.QueueDepth)
	}
	// The queue has room now, but one job may not name more than
	// MaxJobFiles files.
	err := job("render", hooks.ScopeFrame, names("seq/frame.%06d.exr", 1500, 1600))
	if !errors.Is(err, hooks.ErrBusy) || !strings.Contains(err.Error(), `job "render"`) {
		t.Fatalf("a job past its file bound: %v, want ErrBusy naming the job", err)
	}
	if st := n.e.Status(); st.RefusedFiles != 3600 {
		t.Fatalf("refused %d files, want 3600", st.RefusedFiles)
	}
	n.w.Proxy.StallAll.Store(false)
	deadline := time.Now().Add(2 * time.Minute)
	for st = n.e.Status(); st.QueueDepth+st.InFlight > 0; st = n.e.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not drain: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var render *hooks.JobStatus
	for i := range st.Jobs {
		if st.Jobs[i].ID == "render" {
			render = &st.Jobs[i]
		}
	}
	if render == nil || render.Missing != 1500 || render.Wanted != 0 {
		t.Fatalf("render job %+v: want its 1500 absent names counted as missing, none kept as wanted", render)
	}
	if st.MissingFiles < 1500 {
		t.Fatalf("%d missing names counted, want at least 1500", st.MissingFiles)
	}
}

// TestPinSharedByJobs: two jobs that pin one file share the engine's
// handle on it. The file stays held, and so resident through eviction,
// until the last of them releases it; then it is evicted first.
func TestPinSharedByJobs(t *testing.T) {
	n := newNode(t, 8<<20, 4) // pins may hold 4 MiB
	n.w.PutRandom("show/lib/shared.blend", 1<<20)
	for i := 0; i < 16; i++ {
		n.w.PutRandom(fmt.Sprintf("show/fill/%d.exr", i), 1<<20)
	}
	ctx := context.Background()
	for _, job := range []string{"a", "b"} {
		res, err := n.e.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: job}, Scope: hooks.ScopeJob, Wait: time.Minute, Wants: wants("lib/shared.blend")})
		if err != nil || res[0].State != hooks.Resident {
			t.Fatalf("job %s: %+v, %v", job, res, err)
		}
	}
	if got := n.e.Status().PinnedBytes; got != 2<<20 {
		t.Fatalf("two jobs pinning a 1 MiB file: %d bytes pinned, want %d", got, 2<<20)
	}
	// resident reports whether the shared file is still cached, after
	// unpinned files worth more than the budget pushed eviction.
	round := 0
	resident := func() bool {
		t.Helper()
		evicted := n.c.Stats.Evictions.Load()
		for i := 0; i < 8; i++ {
			rel := fmt.Sprintf("fill/%d.exr", (round*8+i)%16)
			if res, err := n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeSequence, Wait: time.Minute, Wants: wants(rel)}); err != nil || res[0].State != hooks.Resident {
				t.Fatalf("%s: %+v, %v", rel, res, err)
			}
		}
		round++
		deadline := time.Now().Add(time.Minute)
		for used, budget := n.c.Used(); used > budget || n.c.Stats.Evictions.Load() == evicted; used, budget = n.c.Used() {
			if time.Now().After(deadline) {
				t.Fatalf("no eviction: %d of %d bytes used", used, budget)
			}
			time.Sleep(10 * time.Millisecond)
		}
		reqs := n.w.Proxy.MediaReqs.Load()
		if res, err := n.e.Prefetch(ctx, hooks.Prefetch{Scope: hooks.ScopeSequence, Wait: time.Minute, Wants: wants("lib/shared.blend")}); err != nil || res[0].State != hooks.Resident {
			t.Fatalf("shared file: %+v, %v", res, err)
		}
		return n.w.Proxy.MediaReqs.Load() == reqs
	}
	if !resident() {
		t.Fatal("a file two jobs pin was evicted")
	}
	if err := n.e.Release(ctx, hooks.Release{Job: "a", Scope: hooks.ScopeJob}); err != nil {
		t.Fatal(err)
	}
	if got := n.e.Status().PinnedBytes; got != 1<<20 {
		t.Fatalf("after one job's release %d bytes pinned, want %d", got, 1<<20)
	}
	if !resident() {
		t.Fatal("a file still pinned by one job was evicted when the other released it")
	}
	if err := n.e.Release(ctx, hooks.Release{Job: "b", Scope: hooks.ScopeJob}); err != nil {
		t.Fatal(err)
	}
	if got := n.e.Status().PinnedBytes; got != 0 {
		t.Fatalf("after both releases %d bytes pinned", got)
	}
	if resident() {
		t.Error("a released file survived eviction that took unpinned files")
	}
}
