package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/learnshare"
)

// learnTask is one attached task of a job on a node daemon, held attached
// by a gate until the test ends it.
type learnTask struct {
	n        *noded
	job      string
	mnt      string
	sock     string
	g        gate
	name     string
	finished <-chan runResult
}

// attachLearnTask attaches a task of job on n that mounts the world's
// show/ and waits for the gate; the test renders through its mount and
// its hook socket.
func attachLearnTask(t *testing.T, w *world, n *noded, job, name string) *learnTask {
	t.Helper()
	g := newGate(t)
	mnt := filepath.Join(n.dir, name, "show")
	ch := n.startRun(t, "--job", job, "--mount", "gs://"+testBucket+"/show:"+mnt, "--", "sh", "-c", g.sh(name))
	waitFor(t, name+" attached", 2*time.Minute, func() bool { return g.ready(name) })
	var sock string
	for _, j := range n.status(t).Jobs {
		for _, tk := range j.Tasks {
			if j.ID == job && len(tk.Mounts) == 1 && tk.Mounts[0] == mnt {
				sock = tk.Socket
			}
		}
	}
	if sock == "" {
		t.Fatalf("%s: no hook socket in the node status", name)
	}
	return &learnTask{n: n, job: job, mnt: mnt, sock: sock, g: g, name: name, finished: ch}
}

// frame sends the hook's frame request: frame starts now, and the hook
// knows of the scene file only.
func (lt *learnTask) frame(t *testing.T, f int) {
	t.Helper()
	c := hooks.NewClient(lt.sock, time.Minute)
	defer c.Close()
	if _, err := c.Prefetch(context.Background(), hooks.PrefetchRequest{Job: hooks.JobInfo{Job: hooks.Job{ID: lt.job}},
		Scope: hooks.ScopeFrame, Frame: &f, Items: []hooks.Item{{Path: filepath.Join(lt.mnt, "scene.pov")}}}); err != nil {
		t.Fatalf("%s: frame %d request: %v", lt.name, f, err)
	}
}

// read opens and reads rels through the mount, as the renderer does, and
// returns how long the reads took.
func (lt *learnTask) read(t *testing.T, rels []string) time.Duration {
	t.Helper()
	start := time.Now()
	for _, rel := range rels {
		if _, err := os.ReadFile(filepath.Join(lt.mnt, rel)); err != nil {
			t.Fatalf("%s: %v", lt.name, err)
		}
	}
	return time.Since(start)
}

func (lt *learnTask) finish(t *testing.T) {
	t.Helper()
	lt.g.open(t)
	if r := waitRun(t, lt.name, lt.finished); r.code != 0 {
		t.Fatalf("%s: exit %d\n%s\n%s", lt.name, r.code, r.out, lt.n.Log)
	}
}

// source is the task's job's one source in the node status.
func (lt *learnTask) source(t *testing.T) (daemon.SourceStatus, daemon.NodeStatus) {
	t.Helper()
	st := lt.n.status(t)
	for _, j := range st.Jobs {
		if j.ID == lt.job && len(j.Sources) == 1 {
			return j.Sources[0], st
		}
	}
	t.Fatalf("%s: job %s has no source in the status: %+v", lt.name, lt.job, st.Jobs)
	return daemon.SourceStatus{}, st
}

// TestNodeLearnShared: node A renders frames 1 to 3 of job J and
// publishes what it learned under the learn prefix; node B, on its own
// cache, attaches a task of J and starts frame 4, its first: B prefetches
// frame 4's files from A's knowledge at the frame request (whose hook
// names only the scene file), so the renderer's reads wait on no GCS
// request. Node C, the same without --learn-prefix, prefetches the scene
// file only, and every other read waits on GCS. Objects
// under the prefix that do not check out (garbage, another version, too
// large) are ignored with a log line each, A's object is bounded, and a
// publication that fails is counted and logged once, never fatal. Nodes D
// and E repeat B and C with the reads right after the frame request, for
// the figure (docs/learn-shared.md).
func TestNodeLearnShared(t *testing.T) {
	const sceneBytes = 5_000
	const frameBytes = sceneBytes + 3_000 + 3_000 + 100_000 + 200_000 + 400_000
	w := newWorld(t, false)
	w.PutRandom("show/scene.pov", sceneBytes)
	w.PutRandom("show/inc/a.inc", 3_000)
	w.PutRandom("show/inc/b.inc", 3_000)
	w.PutRandom("show/tex/static.png", 100_000)
	for f := 1; f <= 6; f++ {
		w.PutRandom(fmt.Sprintf("show/seq/flame.%04d.png", f+4), 200_000)
		w.PutRandom(fmt.Sprintf("show/vdb/smoke.%04d.vdb", f), 400_000)
	}
	// A frame: the scene and its includes, a texture every frame reads, an
	// image sequence at an offset from the frame, a volume sequence.
	files := func(f int) []string {
		return []string{"scene.pov", "inc/a.inc", "inc/b.inc", "tex/static.png",
			fmt.Sprintf("seq/flame.%04d.png", f+4), fmt.Sprintf("vdb/smoke.%04d.vdb", f)}
	}
	learn := []string{"--learn-prefix", "gs://" + testBucket + "/learn", "--speculate", "coopen"}

	a := w.startNode(filepath.Join(t.TempDir(), "a"), learn...)
	ta := attachLearnTask(t, w, a, "J", "a1")
	for f := 1; f <= 3; f++ {
		ta.frame(t, f)
		ta.read(t, files(f))
	}
	// The first publication (at the detach) meets an upload outage: it is
	// counted and logged, the task is not held up, and the next detach
	// publishes.
	w.Proxy.UploadOutage.Store(true)
	ta.finish(t)
	waitFor(t, "node A's failed publication counted", 2*time.Minute, func() bool {
		ls := a.status(t).LearnShared
		return ls != nil && ls.PublishErrors >= 1
	})
	w.Proxy.UploadOutage.Store(false)
	if got := strings.Count(a.Log.String(), "shared learning not published"); got != 1 {
		t.Fatalf("node A logged %d failed publications, want 1\n%s", got, a.Log)
	}
	attachLearnTask(t, w, a, "J", "a2").finish(t)
	waitFor(t, "node A published job J's learning", 2*time.Minute, func() bool {
		ls := a.status(t).LearnShared
		return ls != nil && ls.Published >= 1
	})
	// A task that learns nothing new publishes nothing.
	attachLearnTask(t, w, a, "J", "a3").finish(t)
	waitFor(t, "node A's unchanged knowledge skipped", 2*time.Minute, func() bool { return a.status(t).LearnShared.Unchanged >= 1 })
	if ls := a.status(t).LearnShared; ls.Published != 1 {
		t.Fatalf("node A uploaded its unchanged knowledge again: %+v", ls)
	}
	dir := learnshare.Dir("learn/", "J", "gs://"+testBucket+"/show/")
	pg, err := w.GCS.ListFlatPage(context.Background(), dir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Objects) != 1 || pg.Objects[0].Name != dir+a.status(t).LearnShared.Node {
		t.Fatalf("objects under %s: %+v, want node A's one", dir, pg.Objects)
	}
	published := pg.Objects[0]
	if published.Size > learnshare.MaxObjectBytes {
		t.Fatalf("node A's object is %d bytes, past the %d bound", published.Size, learnshare.MaxObjectBytes)
	}
	body := make([]byte, published.Size)
	if err := w.GCS.ReadRange(context.Background(), published.Name, published.Generation, 0, body); err != nil {
		t.Fatal(err)
	}
	rec, err := learnshare.Decode(body, "J", "gs://"+testBucket+"/show/")
	if err != nil {
		t.Fatalf("node A's object: %v", err)
	}
	if len(rec.Frames) != len(files(1)) || len(rec.CoOpen) == 0 {
		t.Fatalf("node A published %d frame files (want %d) and %d bytes of co-open groups", len(rec.Frames), len(files(1)), len(rec.CoOpen))
	}
	// Beside it, objects no node should trust.
	other := append([]byte(nil), body...)
	binary.BigEndian.PutUint32(other[8:], learnshare.Version+1)
	w.Put(dir+"garbage", []byte("not what a node publishes"))
	w.Put(dir+"version", other)
	w.Put(dir+"oversized", append(append([]byte(nil), body...), make([]byte, learnshare.MaxObjectBytes)...))

	// Every GCS read now waits, as over a far link: what B fetched ahead
	// shows as reads that do not wait.
	w.Proxy.StallMedia.Store(int64(50 * time.Millisecond))
	type figure struct {
		blocked    time.Duration
		requests   int64
		prefetched int64
	}
	// firstFrame attaches a task of J on n and renders frame 4, its first
	// there: the frame request, then the reads, once the node's prefetch
	// queue is empty (settle: the frame request came ahead of the reads,
	// as a renderer's scene load puts it), or at once.
	firstFrame := func(n *noded, name string, settle bool) figure {
		t.Helper()
		tk := attachLearnTask(t, w, n, "J", name)
		tk.frame(t, 4)
		idle := func() bool {
			s, _ := tk.source(t)
			return s.Prefetch.QueueDepth == 0 && s.Prefetch.InFlight == 0
		}
		if settle {
			waitFor(t, name+"'s prefetch settled", 2*time.Minute, idle)
		}
		before := w.Proxy.MediaReqs.Load()
		blocked := tk.read(t, files(4))
		fig := figure{blocked: blocked, requests: w.Proxy.MediaReqs.Load() - before}
		waitFor(t, name+"'s prefetch settled", 2*time.Minute, idle)
		s, _ := tk.source(t)
		fig.prefetched = s.Prefetch.PrefetchedBytes
		tk.finish(t)
		return fig
	}

	b := w.startNode(filepath.Join(t.TempDir(), "b"), learn...)
	with := firstFrame(b, "b1", true)
	ls := b.status(t).LearnShared
	if ls == nil || ls.Read != 1 || ls.Ignored != 3 || ls.CoOpenGroups == 0 {
		t.Fatalf("node B's shared learning: %+v; want 1 object read, 3 ignored, co-open groups taken", ls)
	}
	if out, code := runJitfs(t, "status", "--daemon", b.sock); code != 0 || !strings.Contains(out, "1 read, 3 ignored") {
		t.Fatalf("jitfs status --daemon: exit %d\n%s", code, out)
	}
	if got := strings.Count(b.Log.String(), "shared learning object ignored"); got != 3 {
		t.Fatalf("node B logged %d ignored objects, want 3\n%s", got, b.Log)
	}
	// Frame 4's six files and frame 5's two sequence frames; all of frame
	// 4's were opened.
	if ls.Predictions != 8 || ls.PredictionsUsed != 6 {
		t.Fatalf("node B predicted %d files from node A's frames and %d were used; want 8 and 6", ls.Predictions, ls.PredictionsUsed)
	}
	if with.requests != 0 || with.prefetched < frameBytes {
		t.Fatalf("node B's first frame: %d GCS reads while rendering, %d bytes prefetched; want none and at least %d", with.requests, with.prefetched, frameBytes)
	}

	c := w.startNode(filepath.Join(t.TempDir(), "c"), "--speculate", "coopen")
	without := firstFrame(c, "c1", true)
	if c.status(t).LearnShared != nil {
		t.Fatal("a node without --learn-prefix reports shared learning")
	}
	if without.requests < int64(len(files(4))-1) || without.prefetched != sceneBytes {
		t.Fatalf("without shared learning: %d GCS reads while rendering and %d bytes prefetched; want one per file but the scene, and the scene's %d", without.requests, without.prefetched, sceneBytes)
	}
	// The same with the reads right after the frame request: B's fetches
	// overlap them (logged only: what a read waits for then is a race).
	d := w.startNode(filepath.Join(t.TempDir(), "d"), learn...)
	withNow := firstFrame(d, "d1", false)
	e := w.startNode(filepath.Join(t.TempDir(), "e"), "--speculate", "coopen")
	withoutNow := firstFrame(e, "e1", false)
	if ls := d.status(t).LearnShared; ls == nil || ls.PredictionsUsed != 6 {
		t.Fatalf("node D's shared learning: %+v; want frame 4's 6 files predicted and used", ls)
	}
	t.Logf("first frame on a second node (6 files, %d bytes; 50 ms per GCS read):", frameBytes)
	t.Logf("  %-44s %14s %10s %17s", "", "renderer reads", "GCS reads", "bytes prefetched")
	for _, r := range []struct {
		what string
		f    figure
	}{{"with --learn-prefix, reads after the prefetch", with}, {"without, reads after the prefetch", without},
		{"with --learn-prefix, reads at once", withNow}, {"without, reads at once", withoutNow}} {
		t.Logf("  %-44s %14v %10d %17d", r.what, r.f.blocked.Round(time.Millisecond), r.f.requests, r.f.prefetched)
	}
}
