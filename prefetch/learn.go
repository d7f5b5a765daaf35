package prefetch

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/jitfs/jitfs/hooks"
)

// Learning: while a job renders frame N (between its frame request and the
// next), every file the mount opens is recorded as frame N's. When frame N
// starts, frame N+1's files are predicted from what frame N-1 opened, with
// frame numbers in the names advanced, and prefetched at look-ahead
// priority, a whole frame before the renderer (or the hook) asks. A
// prediction that the next frame never opens is waste; Status reports the
// ratio so a bad predictor shows.

// digits finds the number runs a frame number can hide in.
var digits = regexp.MustCompile(`[0-9]+`)

type learner struct {
	frame   int
	active  bool
	seen    map[string]bool
	learned map[int]map[string]bool // the last frames' sets
	// predicted are the files predicted for the frame being rendered and
	// not opened yet; next, those predicted for the frame after it.
	predicted, next map[string]bool
	nextFrame       int
	// taughtNow and taughtNext are the same for predictions made from
	// taught knowledge (shared.go), counted apart.
	taughtNow, taughtNext map[string]bool
	// started orders learners by their last frame start.
	started int64
}

// shape is a path with its number runs blanked, for pairing the same file
// across frames.
func shape(p string) string { return digits.ReplaceAllString(p, "#") }

// tracksFrame reports whether number run i of a path, holding v, tracks
// the frame: it rose by exactly one from the same run of prev, the previous
// frame's file of the same shape (whose runs are prevRuns), or, without a
// previous frame, it equals frame.
func tracksFrame(v, i int, runs [][]int, prev string, prevRuns [][]int, frame int) bool {
	if prev == "" {
		return v == frame
	}
	if len(prevRuns) != len(runs) {
		return false
	}
	pv, err := strconv.Atoi(prev[prevRuns[i][0]:prevRuns[i][1]])
	return err == nil && v == pv+1
}

// advance rewrites the number runs of p that track the frame: those that
// rose by exactly one from the previous frame's file of the same shape
// (sequences with an offset), or, without a previous frame, those equal to
// from. Padding is kept. It returns "" if no run tracks the frame.
func advance(p string, prevOfShape map[string]string, from, by int) string {
	runs := digits.FindAllStringIndex(p, -1)
	var prevRuns [][]int
	var prev string
	if q, ok := prevOfShape[shape(p)]; ok && q != p {
		prev = q
		prevRuns = digits.FindAllStringIndex(q, -1)
	}
	var b strings.Builder
	last, changed := 0, false
	for i, r := range runs {
		s := p[r[0]:r[1]]
		v, err := strconv.Atoi(s)
		if err != nil {
			continue
		}
		if !tracksFrame(v, i, runs, prev, prevRuns, from) {
			continue
		}
		b.WriteString(p[last:r[0]])
		n := strconv.Itoa(v + by)
		for len(n) < len(s) {
			n = "0" + n
		}
		b.WriteString(n)
		last, changed = r[1], true
	}
	if !changed {
		return ""
	}
	b.WriteString(p[last:])
	return b.String()
}

// predict lists frame next's files from frame from's (and from-1's, when
// known, to tell frame-tracking numbers from others).
func predict(l *learner, from, next int) []string {
	cur := l.learned[from]
	if cur == nil {
		return nil
	}
	prevOfShape := map[string]string{}
	for p := range l.learned[from-1] {
		prevOfShape[shape(p)] = p
	}
	var out []string
	for p := range cur {
		if q := advance(p, prevOfShape, from, next-from); q != "" {
			out = append(out, q)
		}
	}
	return out
}

// Observe records that the mount opened rel. The FS calls it on every
// successful open, so a FUSE open waits for mu here: it must stay cheap,
// and the engine never holds mu across a call into the cache (see the
// package's Concurrency notes).
func (e *Engine) Observe(rel string) {
	if !e.learning.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.learners {
		if !l.active {
			continue
		}
		l.seen[rel] = true
		if l.predicted[rel] {
			delete(l.predicted, rel)
			e.learnedUsed++
		}
		if l.taughtNow[rel] {
			delete(l.taughtNow, rel)
			e.sharedUsed++
		}
	}
}

// frameStartedLocked closes the job's previous frame window, opens one for
// frame, and returns the files predicted for frame+1 and, from taught
// knowledge when the job has no frame of its own to go by, for frame.
func (e *Engine) frameStartedLocked(job string, frame int) (now, next []string) {
	l := e.learners[job]
	if l == nil {
		l = &learner{learned: map[int]map[string]bool{}}
		e.learners[job] = l
		e.learning.Store(true)
	}
	if l.active && l.frame == frame {
		return nil, nil // a repeated request for the frame in progress
	}
	if l.active {
		l.learned[l.frame] = l.seen
		for f := range l.learned {
			if f < l.frame-1 {
				delete(l.learned, f)
			}
		}
	}
	l.active, l.frame, l.seen = true, frame, map[string]bool{}
	l.predicted = map[string]bool{}
	if l.nextFrame == frame && l.next != nil {
		l.predicted = l.next
	}
	l.taughtNow = map[string]bool{}
	if l.nextFrame == frame && l.taughtNext != nil {
		l.taughtNow = l.taughtNext
	}
	e.startSeq++
	l.started = e.startSeq
	next = predict(l, frame-1, frame+1)
	l.next, l.nextFrame = map[string]bool{}, frame+1
	for _, p := range next {
		l.next[p] = true
	}
	e.learnedPredicted += int64(len(next))
	l.taughtNext = nil
	if len(e.taught) > 0 && l.learned[frame-1] == nil {
		// Nothing of its own to predict this frame from (its first here):
		// what other nodes saw, for this frame now and the next ahead.
		now = e.taughtLocked(frame, l.taughtNow)
		for _, p := range now {
			l.taughtNow[p] = true
		}
		if len(next) == 0 {
			next = e.taughtLocked(frame+1, l.taughtNow)
			l.taughtNext = map[string]bool{}
			for _, p := range next {
				l.taughtNext[p] = true
			}
			e.sharedPredicted += int64(len(next))
		}
		e.sharedPredicted += int64(len(now))
	}
	return now, next
}

// wants are the prefetch requests of files named relative to the mount.
func wants(rels []string) []hooks.Want {
	ws := make([]hooks.Want, len(rels))
	for i, r := range rels {
		ws[i] = hooks.Want{Rel: r}
	}
	return ws
}

// learnAhead prefetches what frame+1 will need, at look-ahead priority.
func (e *Engine) learnAhead(job string, frame int, rels []string) {
	if len(rels) == 0 {
		return
	}
	ws := wants(rels)
	next := frame + 1
	e.Prefetch(e.ctx, hooks.Prefetch{Job: hooks.Job{ID: job}, Scope: hooks.ScopeLookahead, Frame: &next, Wants: ws})
}
