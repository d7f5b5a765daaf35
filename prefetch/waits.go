package prefetch

import (
	"slices"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// The progress of waiting requests (hooks.Status.Waits), which `jitfs
// prefetch --wait` polls. Each wait's counts are kept current as its
// tasks are sized and end, so a status report costs a pass over the
// running tasks (at most Workers), not over a wait's files: a 100,000-file
// request polled twice a second must not hold mu for a scan each time.

// waitLocked starts counting the progress of request p, which waits for
// tasks ts.
func (e *Engine) waitLocked(p hooks.Prefetch, ts []*task) *waitState {
	w := &waitState{id: p.RequestID, job: p.Job.ID, started: time.Now(), tasks: ts}
	for _, t := range ts {
		// Every task of a request is queued or running here (an ended
		// task has left e.tasks), so each counts on its end.
		if t.state != "" {
			w.count(t)
			continue
		}
		t.waits = append(t.waits, w)
		if t.sized {
			w.bytes += t.wanted
		} else {
			w.unsized++
		}
	}
	e.waits = append(e.waits, w)
	return w
}

// unwaitLocked stops counting w: its request has returned.
func (e *Engine) unwaitLocked(w *waitState) {
	if i := slices.Index(e.waits, w); i >= 0 {
		e.waits = slices.Delete(e.waits, i, i+1)
	}
	for _, t := range w.tasks {
		if t.state == "" {
			t.waits = slices.DeleteFunc(t.waits, func(x *waitState) bool { return x == w })
		}
	}
	w.tasks = nil
}

// sizedLocked records what is wanted of t's file, now that its size is
// known, and how to ask how much of it has arrived.
func (e *Engine) sizedLocked(t *task, ranges []hooks.Range, size int64, arrived func() int64) {
	if t.sized {
		return
	}
	for _, r := range ranges {
		t.wanted += max(min(r.Off+r.Len, size)-r.Off, 0)
	}
	t.sized, t.arrived = true, arrived
	for _, w := range t.waits {
		w.bytes += t.wanted
		w.unsized--
	}
}

// endedLocked counts t's end (its state is set) in the waits that wanted it.
func (e *Engine) endedLocked(t *task) {
	for _, w := range t.waits {
		if !t.sized {
			w.unsized--
		}
		w.count(t)
	}
	t.waits, t.arrived = nil, nil
}

// count adds an ended task to w's counts (its bytes, if sized, are in
// w.bytes already).
func (w *waitState) count(t *task) {
	switch t.state {
	case hooks.Resident:
		w.resident++
		w.residentBytes += t.wanted
	case hooks.Missing:
		w.missing++
	default:
		w.failed++
	}
}

// waitsStatus reports the waits' progress. Called without mu: it takes mu
// for the counts, then asks the cache how far the running fetches are
// after unlocking (the object's lock can wait behind disk I/O).
func (e *Engine) waitsStatus() []hooks.WaitProgress {
	now := time.Now()
	type partial struct {
		t       *task // compared only: its fields are read under mu
		arrived func() int64
		wanted  int64
		into    []int // indexes in out
		slowest []int // indexes in out whose slowest file it is
	}
	e.mu.Lock()
	shown := e.waits[:min(len(e.waits), hooks.MaxWaitsShown)]
	out := make([]hooks.WaitProgress, len(shown))
	at := make(map[*waitState]int, len(shown))
	for i, w := range shown {
		at[w] = i
		out[i] = hooks.WaitProgress{
			RequestID: w.id, Job: w.job, Started: float64(w.started.UnixNano()) / 1e9,
			Files: len(w.tasks), ResidentFiles: w.resident, MissingFiles: w.missing, FailedFiles: w.failed,
			Bytes: w.bytes, BytesKnown: w.unsized == 0, BytesResident: w.residentBytes,
		}
	}
	// The slowest file of a wait is the one of its running tasks fetched
	// longest; with none running, the first still queued.
	oldest := map[int]*task{}
	var parts []partial
	for t := range e.running {
		var pt partial
		for _, w := range t.waits {
			i, ok := at[w]
			if !ok {
				continue
			}
			pt.into = append(pt.into, i)
			if o := oldest[i]; o == nil || t.started.Before(o.started) {
				oldest[i] = t
			}
		}
		// Only whole files: what has arrived of a ranged file may lie
		// outside its ranges.
		if len(pt.into) > 0 && t.arrived != nil && len(t.want.Ranges) == 0 {
			pt.t, pt.arrived, pt.wanted = t, t.arrived, t.wanted
			parts = append(parts, pt)
		}
	}
	for i, w := range shown {
		if t := oldest[i]; t != nil {
			out[i].Slowest = &hooks.PendingFile{Path: t.want.Rel, Size: t.wanted, Fetching: true, AgeMS: now.Sub(t.started).Milliseconds()}
			continue
		}
		for w.next < len(w.tasks) && w.tasks[w.next].state != "" {
			w.next++
		}
		if w.next < len(w.tasks) {
			t := w.tasks[w.next]
			out[i].Slowest = &hooks.PendingFile{Path: t.want.Rel, Size: t.wanted, AgeMS: now.Sub(w.started).Milliseconds()}
		}
	}
	for j := range parts {
		pt := &parts[j]
		for _, i := range pt.into {
			if oldest[i] == pt.t {
				pt.slowest = append(pt.slowest, i)
			}
		}
	}
	e.mu.Unlock()
	for _, pt := range parts {
		n := min(pt.arrived(), pt.wanted)
		for _, i := range pt.into {
			out[i].BytesResident += n
		}
		for _, i := range pt.slowest {
			out[i].Slowest.Bytes = n
		}
	}
	return out
}
