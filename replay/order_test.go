package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jitfs/jitfs/trace"
)

// streamLog records what the replay's streams did, in the order they did
// it, and lets a test block a stream until another has reached a point.
type streamLog struct {
	mu   sync.Mutex
	cond *sync.Cond
	evs  []streamEvent
	// hold, when set, runs inside the observer, so it blocks the stream
	// that reported; it must not hold mu.
	hold func(l *streamLog, e streamEvent)
}

type streamEvent struct {
	pid      int
	what     string // wait, start, end, cancelled
	waitsFor []int
}

func newStreamLog() *streamLog {
	l := &streamLog{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *streamLog) observe(pid int, what string, waitsFor []int) {
	e := streamEvent{pid: pid, what: what, waitsFor: waitsFor}
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.cond.Broadcast()
	l.mu.Unlock()
	if l.hold != nil {
		l.hold(l, e)
	}
}

// waitFor blocks until some recorded event satisfies ok and returns it.
func (l *streamLog) waitFor(ok func(streamEvent) bool) streamEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for _, e := range l.evs {
			if ok(e) {
				return e
			}
		}
		l.cond.Wait()
	}
}

// index returns the position of pid's first event of kind what, or -1.
func (l *streamLog) index(pid int, what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.IndexFunc(l.evs, func(e streamEvent) bool { return e.pid == pid && e.what == what })
}

func (l *streamLog) waitsOf(pid int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.evs {
		if e.pid == pid && e.what == "wait" {
			return e.waitsFor
		}
	}
	return nil
}

// startedOrWaitsOn reports whether other has started, or has begun to
// wait for mine: either settles a barrier between the two without
// hanging when the replay wrongly orders other after mine.
func startedOrWaitsOn(other, mine int) func(streamEvent) bool {
	return func(e streamEvent) bool {
		return e.pid == other && (e.what == "start" || e.what == "wait" && slices.Contains(e.waitsFor, mine))
	}
}

// procEvents is what one traced process does to its frame: look it up,
// open it, read it and close it, starting at t for dur seconds.
func procEvents(pid int, t, dur float64, file string) []trace.Event {
	p := "/show/" + file
	return []trace.Event{
		{T: t, Pid: pid, Op: trace.OpStat, Path: p, Size: 100},
		{T: t + dur*0.25, Pid: pid, Op: trace.OpOpen, Path: p, Fh: 3},
		{T: t + dur*0.5, Pid: pid, Op: trace.OpRead, Path: p, Fh: 3, Len: 4096, N: 100},
		{T: t + dur*0.75, Pid: pid, Op: trace.OpClose, Path: p, Fh: 3, Dur: dur * 0.25},
	}
}

func frameTree(t *testing.T, n int) string {
	dir := t.TempDir()
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), make([]byte, 100), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mergeByTime interleaves per-process events in recorded order, as a
// trace holds them.
func mergeByTime(parts ...[]trace.Event) []trace.Event {
	var evs []trace.Event
	for _, p := range parts {
		evs = append(evs, p...)
	}
	slices.SortStableFunc(evs, func(a, b trace.Event) int {
		switch {
		case a.T < b.T:
			return -1
		case a.T > b.T:
			return 1
		}
		return 0
	})
	return evs
}

// A shell loop's processes ran one after another: an unpaced replay runs
// them one after another too, in recorded order, rather than all at once.
func TestReplaySequentialPidsRunInTurn(t *testing.T) {
	dir := frameTree(t, 5)
	h := trace.Header{Format: trace.Format, Source: "strace", Root: "/show"}
	var parts [][]trace.Event
	// Pids are not in time order: the order comes from the timestamps.
	pids := []int{40, 10, 30, 50, 20}
	for i, pid := range pids {
		parts = append(parts, procEvents(pid, float64(i), 0.5, fmt.Sprintf("f%d", i)))
	}
	evs := mergeByTime(parts...)
	// The trailer names the last process but is written when recording
	// stops; it must not make that process overlap the others.
	evs = append(evs, trace.Event{T: 100, Pid: pids[0], Op: trace.OpEnd})
	l := newStreamLog()
	res, err := Run(context.Background(), h, evs, Options{Root: dir, observe: l.observe})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Pids != 5 || res.Opens != 5 || res.Bytes != 500 || res.MaxConcurrent != 1 {
		t.Errorf("result = %+v, want 5 pids, 5 opens, 500 bytes, one pid at a time", res)
	}
	var got []string
	for _, e := range l.evs {
		if e.what != "wait" {
			got = append(got, fmt.Sprintf("%s %d", e.what, e.pid))
		}
	}
	var want []string
	for _, pid := range pids {
		want = append(want, fmt.Sprintf("start %d", pid), fmt.Sprintf("end %d", pid))
	}
	if !slices.Equal(got, want) {
		t.Errorf("streams ran as\n  %s\nwant\n  %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	for i, pid := range pids {
		if w := l.waitsOf(pid); !slices.Equal(w, pids[:i]) {
			t.Errorf("pid %d waited for %v, want %v", pid, w, pids[:i])
		}
	}
}

// Threads that overlapped when recorded replay concurrently; a thread
// that began after others had ended waits for those and only those.
//
//	A [0, 1]   B [0.5, 2]   C [1.5, 3]   D [2.5, 2.6]
//
// C follows A; D follows A and B but overlaps C.
func TestReplayOverlappingPidsRunTogether(t *testing.T) {
	const A, B, C, D = 1, 2, 3, 4
	dir := frameTree(t, 4)
	h := trace.Header{Format: trace.Format, Source: "strace", Root: "/show"}
	evs := mergeByTime(
		procEvents(A, 0, 1, "f0"),
		procEvents(B, 0.5, 1.5, "f1"),
		procEvents(C, 1.5, 1.5, "f2"),
		procEvents(D, 2.5, 0.1, "f3"),
	)
	l := newStreamLog()
	// Each of A and B, and each of C and D, holds its stream at its start
	// until the other has started: the replay finishes only if the pairs
	// really run at the same time. A wrong order releases the barrier
	// instead of hanging, and the checks below report it.
	partner := map[int]int{A: B, B: A, C: D, D: C}
	l.hold = func(l *streamLog, e streamEvent) {
		if e.what == "start" {
			l.waitFor(startedOrWaitsOn(partner[e.pid], e.pid))
		}
	}
	res, err := Run(context.Background(), h, evs, Options{Root: dir, observe: l.observe})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Pids != 4 || res.Bytes != 400 || res.MaxConcurrent != 2 {
		t.Errorf("result = %+v, want 4 pids, 400 bytes, two at once at most", res)
	}
	wantWaits := map[int][]int{A: nil, B: nil, C: {A}, D: {A, B}}
	for pid, want := range wantWaits {
		got := l.waitsOf(pid)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("pid %d waited for %v, want %v", pid, got, want)
		}
		for _, before := range want {
			if end, start := l.index(before, "end"), l.index(pid, "start"); end < 0 || start < end {
				t.Errorf("pid %d started (event %d) before pid %d ended (event %d)", pid, start, before, end)
			}
		}
	}
	for _, pair := range [][2]int{{A, B}, {C, D}} {
		if l.index(pair[0], "end") < l.index(pair[1], "start") || l.index(pair[1], "end") < l.index(pair[0], "start") {
			t.Errorf("pids %d and %d did not run at the same time: %+v", pair[0], pair[1], l.evs)
		}
	}
}

// A stream still waiting for its turn gives up when the replay is
// cancelled, rather than keeping Run from returning.
func TestReplayCancelWhileWaitingForTurn(t *testing.T) {
	dir := frameTree(t, 2)
	h := trace.Header{Format: trace.Format, Source: "strace", Root: "/show"}
	evs := mergeByTime(procEvents(1, 0, 1, "f0"), procEvents(2, 2, 1, "f1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newStreamLog()
	// Pid 1 holds its stream until pid 2, queued behind it, has given up.
	l.hold = func(l *streamLog, e streamEvent) {
		if e.pid == 1 && e.what == "start" {
			l.waitFor(func(e streamEvent) bool { return e.pid == 2 && e.what == "wait" })
			cancel()
			l.waitFor(func(e streamEvent) bool { return e.pid == 2 && e.what == "cancelled" })
		}
	}
	res, err := Run(ctx, h, evs, Options{Root: dir, observe: l.observe})
	if err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if i := l.index(2, "start"); i >= 0 {
		t.Errorf("pid 2 started after the replay was cancelled: %+v", l.evs)
	}
	if res.Pids != 2 {
		t.Errorf("result = %+v", res)
	}
}

// sparseTree lays out, under a temp dir, every file and directory a trace
// found, at the size the trace saw, as sparse files: enough for a replay
// to open and read what the render did without the corpus.
func sparseTree(t *testing.T, h trace.Header, evs []trace.Event) string {
	dir := t.TempDir()
	sizes := map[string]int64{}
	dirs := map[string]bool{}
	for _, ev := range evs {
		if ev.Err != "" || ev.Write || ev.Op == trace.OpReadlink || !trace.Under(ev.Path, h.Root) || ev.Path == h.Root {
			continue
		}
		rel := strings.TrimPrefix(ev.Path, strings.TrimSuffix(h.Root, "/"))
		if ev.Dir || ev.Op == trace.OpReaddir {
			dirs[rel] = true
			continue
		}
		end := ev.Size
		if ev.Op == trace.OpRead {
			end = max(end, ev.Off+ev.N)
		}
		sizes[rel] = max(sizes[rel], end)
	}
	for rel := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for rel, size := range sizes {
		if dirs[rel] {
			continue
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return dir
}

// The checked-in traces keep their recorded overlap: the oiiotool loop's
// 120 processes replay one at a time, while Blender's and POV-Ray's
// threads that overlapped when recorded never wait for each other, and
// no stream starts before one that had ended when it began has ended.
func TestReplayTracesKeepRecordedOverlap(t *testing.T) {
	files, err := filepath.Glob("../testdata/traces/*.jsonl.zst")
	if err != nil || len(files) == 0 {
		t.Fatalf("no traces in ../testdata/traces (%v)", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".jsonl.zst")
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			h, evs, err := trace.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			// The recorded span of each pid, from the trace itself.
			type span struct{ first, last float64 }
			spans := map[int]*span{}
			for _, ev := range evs {
				if ev.Op == trace.OpEnd {
					continue
				}
				s := spans[ev.Pid]
				if s == nil {
					s = &span{ev.T, ev.T}
					spans[ev.Pid] = s
				}
				s.first, s.last = min(s.first, ev.T), max(s.last, ev.T+ev.Dur)
			}
			l := newStreamLog()
			res, err := Run(context.Background(), h, evs, Options{Root: sparseTree(t, h, evs), observe: l.observe})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes == 0 {
				t.Errorf("nothing read: %+v", res)
			}
			t.Logf("%d pids, at most %d at once; %d ops, %d bytes, %d errors against the sparse tree", res.Pids, res.MaxConcurrent, res.Ops, res.Bytes, res.Errors)
			for pid, s := range spans {
				var want []int
				for other, o := range spans {
					if o.last < s.first {
						want = append(want, other)
						if end, start := l.index(other, "end"), l.index(pid, "start"); end < 0 || start < end {
							t.Errorf("pid %d started (event %d) before pid %d, which had ended when it began, ended (event %d)", pid, start, other, end)
						}
					}
				}
				slices.Sort(want)
				got := slices.Clone(l.waitsOf(pid))
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("pid %d waited for %v, want the pids that had ended when it began: %v", pid, got, want)
				}
			}
			if strings.HasPrefix(name, "oiiotool_sh020_review_1001-1120") && (res.Pids != 120 || res.MaxConcurrent != 1) {
				t.Errorf("the oiiotool loop replayed %d pids, up to %d at once; want 120, one at a time", res.Pids, res.MaxConcurrent)
			}
		})
	}
}
