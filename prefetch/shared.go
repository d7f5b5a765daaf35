package prefetch

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jitfs/jitfs/hooks"
)

// Frame knowledge shared between engines (the node daemon publishes a
// job's to other nodes: internal/learnshare). A frame's files are kept
// generalised: each number run that tracks the frame is an offset from
// it, so the set predicts the files of any frame, not only the next. An
// engine taught such a set predicts a job's frame F from it when the job
// has no frame F-1 of its own to predict from (its first frame here), and
// fetches those files at once, a band below the frame request's own.

// FrameFile is one file of a frame, generalised: Parts are the literal
// pieces around Runs, the number runs that track the frame (len(Parts) ==
// len(Runs)+1). A file with no run is opened by every frame.
type FrameFile struct {
	Parts []string   `json:"p"`
	Runs  []FrameRun `json:"r,omitempty"`
}

// FrameRun is a number run at Off frames from the frame, zero-padded to
// Width digits at least.
type FrameRun struct {
	Off   int `json:"o"`
	Width int `json:"w"`
}

// Bounds on what a FrameFile set may hold, checked by Validate: larger
// values are not something learning makes.
const (
	MaxFrameFiles = 4096
	maxFramePath  = 4096
	maxFrameRuns  = 8
	maxFrameOff   = 1_000_000
)

// At is the file's name at frame, or false when a run would be negative.
func (f FrameFile) At(frame int) (string, bool) {
	var b strings.Builder
	for i, p := range f.Parts {
		b.WriteString(p)
		if i == len(f.Runs) {
			break
		}
		r := f.Runs[i]
		v := frame + r.Off
		if v < 0 {
			return "", false
		}
		s := strconv.Itoa(v)
		for len(s) < r.Width {
			s = "0" + s
		}
		b.WriteString(s)
	}
	return b.String(), true
}

func (f FrameFile) key() string {
	var b strings.Builder
	for i, p := range f.Parts {
		b.WriteString(p)
		if i < len(f.Runs) {
			fmt.Fprintf(&b, "\x00%d\x00%d\x00", f.Runs[i].Off, f.Runs[i].Width)
		}
	}
	return b.String()
}

// ErrBadFrameFile marks a shared frame set that learning cannot have made.
var ErrBadFrameFile = errors.New("prefetch: malformed frame file")

// ValidateFrameFiles checks a frame set read from elsewhere.
func ValidateFrameFiles(fs []FrameFile) error {
	if len(fs) > MaxFrameFiles {
		return fmt.Errorf("%w: %d files, at most %d", ErrBadFrameFile, len(fs), MaxFrameFiles)
	}
	for i, f := range fs {
		n := 0
		for _, p := range f.Parts {
			n += len(p)
		}
		switch {
		case len(f.Parts) != len(f.Runs)+1:
			return fmt.Errorf("%w: files[%d]: %d parts around %d runs", ErrBadFrameFile, i, len(f.Parts), len(f.Runs))
		case len(f.Runs) > maxFrameRuns:
			return fmt.Errorf("%w: files[%d]: %d runs", ErrBadFrameFile, i, len(f.Runs))
		case n == 0 || n > maxFramePath:
			return fmt.Errorf("%w: files[%d]: path of %d bytes", ErrBadFrameFile, i, n)
		}
		for _, r := range f.Runs {
			if r.Width < 1 || r.Width > 9 || r.Off < -maxFrameOff || r.Off > maxFrameOff {
				return fmt.Errorf("%w: files[%d]: run offset %d width %d", ErrBadFrameFile, i, r.Off, r.Width)
			}
		}
		if s, _ := f.At(maxFrameOff); strings.HasPrefix(s, "/") || strings.Contains("/"+s+"/", "/../") || strings.ContainsRune(s, 0) {
			return fmt.Errorf("%w: files[%d]: %q is not a clean relative path", ErrBadFrameFile, i, s)
		}
	}
	return nil
}

// generalise turns p, opened during frame, into a FrameFile: its number
// runs that track the frame (by advance's rule) become offsets.
func generalise(p string, prevOfShape map[string]string, frame int) FrameFile {
	runs := digits.FindAllStringIndex(p, -1)
	var prevRuns [][]int
	var prev string
	if q, ok := prevOfShape[shape(p)]; ok && q != p {
		prev = q
		prevRuns = digits.FindAllStringIndex(q, -1)
	}
	var f FrameFile
	last := 0
	for i, r := range runs {
		s := p[r[0]:r[1]]
		v, err := strconv.Atoi(s)
		if err != nil || len(s) > 9 {
			continue
		}
		if !tracksFrame(v, i, runs, prev, prevRuns, frame) {
			continue
		}
		f.Parts = append(f.Parts, p[last:r[0]])
		f.Runs = append(f.Runs, FrameRun{Off: v - frame, Width: len(s)})
		last = r[1]
	}
	f.Parts = append(f.Parts, p[last:])
	return f
}

// generaliseFrame is frame's files (set) generalised, paired with the
// previous frame's (prev, nil when unknown). With a previous frame known,
// a file with no frame-tracking run is kept only if that frame opened it
// too: opened by every frame, not once.
func generaliseFrame(set, prev map[string]bool, frame int, into map[string]FrameFile) {
	prevOfShape := map[string]string{}
	for p := range prev {
		prevOfShape[shape(p)] = p
	}
	for p := range set {
		f := generalise(p, prevOfShape, frame)
		if len(f.Runs) == 0 && prev != nil && !prev[p] {
			continue
		}
		if len(into) >= MaxFrameFiles {
			return
		}
		into[f.key()] = f
	}
}

// FrameKnowledge is what the engine learned of a job's frames, generalised
// (nil when it saw no frame of the job): its last completed frame, paired
// with the one before, and the frame in progress. Without job's own, the
// most recently started job's is given: a hook's job id need not be the
// node's.
func (e *Engine) FrameKnowledge(job string) []FrameFile {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.learners[job]
	if l == nil {
		for _, o := range e.learners {
			if l == nil || o.started > l.started {
				l = o
			}
		}
	}
	if l == nil {
		return nil
	}
	into := map[string]FrameFile{}
	last, ok := -1, false
	for f := range l.learned {
		if !ok || f > last {
			last, ok = f, true
		}
	}
	if ok {
		generaliseFrame(l.learned[last], l.learned[last-1], last, into)
	}
	if l.active && len(l.seen) > 0 {
		generaliseFrame(l.seen, l.learned[l.frame-1], l.frame, into)
	}
	out := make([]FrameFile, 0, len(into))
	keys := make([]string, 0, len(into))
	for k := range into {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, into[k])
	}
	return out
}

// TeachFrames gives the engine frame knowledge learned elsewhere (by other
// nodes, for the same job and source), replacing what it was taught
// before. Until a job has frames of its own to predict from, each frame
// it starts is predicted from it.
func (e *Engine) TeachFrames(fs []FrameFile) {
	if len(fs) > MaxFrameFiles {
		fs = fs[:MaxFrameFiles]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.taught = fs
}

// SharedStats are the files predicted from taught knowledge, and of those,
// opened by the frame they were predicted for.
func (e *Engine) SharedStats() (predicted, used int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sharedPredicted, e.sharedUsed
}

// taughtLocked lists the taught files at frame, minus those in skip.
func (e *Engine) taughtLocked(frame int, skip map[string]bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range e.taught {
		p, ok := f.At(frame)
		if !ok || seen[p] || skip[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

// sharedPriority is the band of a frame's files predicted from taught
// knowledge: below the frame request's own files (what the hook named is
// certain), above everything else.
var sharedPriority = hooks.ScopeFrame.Priority() - 1

// learnNow prefetches frame's files predicted from taught knowledge,
// pinned for the frame as its request's own files are.
func (e *Engine) learnNow(job string, frame int, rels []string) {
	if len(rels) == 0 {
		return
	}
	ws := wants(rels)
	f := frame
	e.Prefetch(e.ctx, hooks.Prefetch{Job: hooks.Job{ID: job}, Scope: hooks.ScopeFrame, Frame: &f, Priority: sharedPriority, Wants: ws})
}
