package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/trace"
)

// Mapping rewrites paths that start with Old to start with New.
type Mapping struct{ Old, New string }

// ParseMapping parses OLD=NEW.
func ParseMapping(s string) (Mapping, error) {
	old, nw, ok := strings.Cut(s, "=")
	if !ok || old == "" || nw == "" {
		return Mapping{}, fmt.Errorf("bad mapping %q: want OLD=NEW", s)
	}
	return Mapping{Old: strings.TrimSuffix(old, "/"), New: strings.TrimSuffix(nw, "/")}, nil
}

// Options configure a replay.
type Options struct {
	// Root replaces the trace's root directory (Header.Root).
	Root string
	// Map rewrites other path prefixes; the longest matching Old wins and
	// is applied before Root.
	Map []Mapping
	// Pace keeps the recorded time gaps between operations.
	Pace bool
	// MaxRead bounds one read call's buffer (default 8 MiB); longer
	// recorded reads and mmaps are split.
	MaxRead int

	// observe is passed to the runner (tests only).
	observe func(pid int, what string, waitsFor []int)
}

// Latency summarises one operation type's latencies, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Result is what a replay measured.
type Result struct {
	Root  string  `json:"root"`
	Wall  float64 `json:"wall_s"`
	TTFB  float64 `json:"ttfb_s"` // first byte of data read, from the start; -1 when nothing was read
	Ops   int64   `json:"ops"`
	Bytes int64   `json:"bytes_read"`
	Opens int64   `json:"opens"`
	// ENOENT counts lookups that failed as they did when recorded.
	ENOENT int64 `json:"enoent"`
	// Mismatches are operations that failed when recorded but succeed now.
	Mismatches int64 `json:"mismatches"`
	// Skipped are events outside Root and every mapping, or of ops that
	// replay does not issue (the trailer, unknown ops).
	Skipped int64 `json:"skipped"`
	Errors  int64 `json:"errors"`
	// FirstErrors holds up to ten error messages.
	FirstErrors []string           `json:"first_errors,omitempty"`
	Latency     map[string]Latency `json:"latency"`
	Pids        int                `json:"pids"`
	// MaxConcurrent is the most pids whose operations were being replayed
	// at one time: how parallel the replay really was.
	MaxConcurrent int `json:"max_concurrent"`
}

// Err summarises unexpected errors, or returns nil.
func (r *Result) Err() error {
	if r.Errors == 0 {
		return nil
	}
	return fmt.Errorf("replay: %d operations failed that succeeded when recorded; first: %s", r.Errors, strings.Join(r.FirstErrors, "; "))
}

type stream struct {
	pid int
	evs []trace.Event
	// first and last bound the stream's recorded activity: the start of
	// its first operation and the end of its last.
	first, last float64
	// after is how many streams, taken in order of their last time, must
	// finish before this one starts (unpaced replays only).
	after int
	// rank is the stream's place in that order.
	rank int
}

type handleKey struct {
	pid int
	fh  uint64
}

type openFile struct {
	f    *os.File
	path string
}

type runner struct {
	opts   Options
	root   string
	shared bool // mount traces: a FUSE handle is valid in any pid
	start  time.Time
	t0     float64

	// opened holds, per recorded FUSE handle, a channel closed once its
	// open has been replayed (mount traces only; read-only after setup).
	opened map[uint64]chan struct{}

	// seq orders the streams of an unpaced replay; nil when paced.
	seq *sequencer
	// observe, when set (tests only), hears each stream wait for the
	// streams before it (waitsFor: their pids), start issuing operations
	// and end.
	observe func(pid int, what string, waitsFor []int)

	mu      sync.Mutex
	res     Result
	lat     map[string][]float64
	ttfb    time.Duration
	gotByte bool
	running int
}

// Run replays evs (from a trace with header h) and returns what it
// measured. A cancelled ctx stops it early with ctx.Err().
func Run(ctx context.Context, h trace.Header, evs []trace.Event, opts Options) (*Result, error) {
	if opts.Root == "" {
		return nil, errors.New("replay: no root directory")
	}
	st, err := os.Stat(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("replay: root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("replay: root %s is not a directory", opts.Root)
	}
	if opts.MaxRead <= 0 {
		opts.MaxRead = 8 << 20
	}
	sort.SliceStable(opts.Map, func(i, j int) bool { return len(opts.Map[i].Old) > len(opts.Map[j].Old) })
	r := &runner{opts: opts, root: strings.TrimSuffix(h.Root, "/"), shared: h.Source == "mount",
		lat: map[string][]float64{}, observe: opts.observe}
	r.res.Root = opts.Root

	byPid := map[int]*stream{}
	var order []*stream
	for _, ev := range evs {
		s := byPid[ev.Pid]
		if s == nil {
			s = &stream{pid: ev.Pid}
			byPid[ev.Pid] = s
			order = append(order, s)
		}
		s.evs = append(s.evs, ev)
	}
	if len(evs) > 0 {
		r.t0 = evs[0].T
		for _, ev := range evs {
			r.t0 = min(r.t0, ev.T)
		}
	}
	r.res.Pids = len(order)
	if !opts.Pace {
		r.seq = newSequencer(order)
	}

	// In a mount trace a handle opened by one thread is read by others,
	// which replay runs concurrently: a read must wait for its open (the
	// recording proves the open came first) rather than open the file
	// again, or the replay would show opens the render never made.
	if r.shared {
		r.opened = map[uint64]chan struct{}{}
		for _, ev := range evs {
			if ev.Op == trace.OpOpen && ev.Err == "" && ev.Fh != 0 {
				r.opened[ev.Fh] = make(chan struct{})
			}
		}
	}
	var handles sync.Map // handleKey → *openFile; shared between pids of a mount trace
	r.start = time.Now()
	var wg sync.WaitGroup
	for _, s := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.play(ctx, s, &handles)
		}()
	}
	wg.Wait()
	handles.Range(func(_, v any) bool { v.(*openFile).f.Close(); return true })
	r.res.Wall = time.Since(r.start).Seconds()
	r.res.TTFB = -1
	if r.gotByte {
		r.res.TTFB = r.ttfb.Seconds()
	}
	r.res.Latency = map[string]Latency{}
	for op, ds := range r.lat {
		slices.Sort(ds)
		r.res.Latency[op] = Latency{Count: int64(len(ds)), P50: pct(ds, 0.50), P99: pct(ds, 0.99), Max: ds[len(ds)-1]}
	}
	if err := ctx.Err(); err != nil {
		return &r.res, err
	}
	return &r.res, nil
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

// mapPath turns a traced path into the path to operate on, or "" for a
// path outside the replayed tree. An explicit mapping wins; otherwise the
// trace's root is replaced by Root.
func (r *runner) mapPath(p string) string {
	if p == "" {
		return ""
	}
	for _, m := range r.opts.Map {
		if trace.Under(p, m.Old) {
			return m.New + p[len(m.Old):]
		}
	}
	root := strings.TrimSuffix(r.opts.Root, "/")
	if r.root == "" || r.root == "/" {
		return root + p
	}
	if trace.Under(p, r.root) {
		return root + p[len(r.root):]
	}
	return ""
}

func (r *runner) play(ctx context.Context, s *stream, handles *sync.Map) {
	if r.seq != nil {
		// Deferred first, so it runs last: successors start only once
		// this stream is wholly done.
		defer r.seq.finish(s)
		if !r.seq.wait(ctx, s, r.observe) {
			return
		}
	}
	started := false
	defer func() {
		if started {
			r.stopped(s)
		}
	}()
	buf := make([]byte, 0)
	for _, ev := range s.evs {
		if ctx.Err() != nil {
			return
		}
		if r.opts.Pace {
			due := r.start.Add(time.Duration((ev.T - r.t0) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
		}
		if !started {
			started = true
			r.began(s)
		}
		key := handleKey{pid: s.pid, fh: ev.Fh}
		if r.shared {
			key.pid = 0
		}
		p := r.mapPath(ev.Path)
		start := time.Now()
		var err error
		var n int64
		switch ev.Op {
		case trace.OpLookup, trace.OpStat, trace.OpGetattr, trace.OpAccess:
			if p == "" {
				r.skip()
				continue
			}
			_, err = os.Stat(p)
		case trace.OpReadlink:
			if p == "" {
				r.skip()
				continue
			}
			_, err = os.Readlink(p)
		case trace.OpOpen:
			// Opens for writing are the render's outputs, not inputs; a
			// read-only replay leaves them out.
			if p == "" || ev.Write {
				r.skip()
				continue
			}
			var f *os.File
			f, err = os.Open(p)
			if err == nil {
				r.count(func(res *Result) { res.Opens++ })
				if old, loaded := handles.Swap(key, &openFile{f: f, path: p}); loaded {
					old.(*openFile).f.Close()
				}
			}
			if ch := r.opened[ev.Fh]; ch != nil && ev.Err == "" {
				select {
				case <-ch:
				default:
					close(ch)
				}
			}
		case trace.OpRead, trace.OpMmap:
			if p == "" {
				r.skip()
				continue
			}
			if ch := r.opened[ev.Fh]; ch != nil {
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
					// The open failed or never comes; read by path.
				case <-ctx.Done():
					return
				}
			}
			var f *os.File
			if f, err = r.handle(handles, key, p); err == nil {
				if cap(buf) < min(int(ev.Len), r.opts.MaxRead) {
					buf = make([]byte, min(int(ev.Len), r.opts.MaxRead))
				}
				n, err = readRange(f, buf[:cap(buf)], ev.Off, ev.Len)
			}
		case trace.OpReaddir:
			if p == "" {
				r.skip()
				continue
			}
			var des []os.DirEntry
			des, err = os.ReadDir(p)
			n = int64(len(des))
		case trace.OpRelease, trace.OpClose:
			// A FUSE release arrives on its own thread, which replay runs
			// concurrently with the readers: closing the shared handle
			// could pull it from under a read still to come. Mount-trace
			// handles are closed when the replay ends instead.
			if r.shared {
				continue
			}
			if v, ok := handles.LoadAndDelete(key); ok {
				v.(*openFile).f.Close()
			}
			continue
		default:
			r.skip()
			continue
		}
		r.done(ev, start, n, err)
	}
}

// handle finds the open file a read refers to. A read whose open is not in
// the trace (opened before recording began, or by another thread of the
// process) opens the path itself, so the bytes are still read.
func (r *runner) handle(handles *sync.Map, key handleKey, p string) (*os.File, error) {
	if v, ok := handles.Load(key); ok && v.(*openFile).path == p {
		return v.(*openFile).f, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if old, loaded := handles.Swap(key, &openFile{f: f, path: p}); loaded {
		old.(*openFile).f.Close()
	}
	return f, nil
}

// readRange reads [off, off+length) in buffer-sized calls, stopping at EOF.
func readRange(f *os.File, buf []byte, off, length int64) (int64, error) {
	var total int64
	for total < length {
		chunk := buf[:min(int64(len(buf)), length-total)]
		k, err := f.ReadAt(chunk, off+total)
		total += int64(k)
		if err == io.EOF || (err == nil && k == 0) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// began and stopped bracket the part of a stream that issues operations,
// which is what MaxConcurrent counts: a paced stream sleeping until its
// first recorded time is not yet replaying.
func (r *runner) began(s *stream) {
	r.mu.Lock()
	r.running++
	r.res.MaxConcurrent = max(r.res.MaxConcurrent, r.running)
	r.mu.Unlock()
	if r.observe != nil {
		r.observe(s.pid, "start", nil)
	}
}

func (r *runner) stopped(s *stream) {
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	if r.observe != nil {
		r.observe(s.pid, "end", nil)
	}
}

// sequencer keeps an unpaced replay from running at once processes that
// ran one after another when recorded. Replay cannot tell a job's
// successive processes from unrelated ones (a trace has no parent pids,
// and a strace import keeps only the corpus's events), so it goes by time:
// a stream starts once every stream whose last operation ended before its
// first began has finished. Streams that overlapped when recorded (a
// renderer's threads, a farm's concurrent workers) still run together,
// while a shell loop's processes run one at a time, as they did.
type sequencer struct {
	// ready[k] is closed once the first k streams by last time have all
	// finished; it exists only for the k some stream waits for. The map
	// is read-only after newSequencer.
	ready map[int]chan struct{}
	// byLast holds the streams in order of their last time (their rank).
	byLast []*stream

	mu   sync.Mutex
	done []bool // by rank
	upTo int    // done[:upTo] are all true
}

func newSequencer(streams []*stream) *sequencer {
	for _, s := range streams {
		bounds(s)
	}
	byLast := slices.Clone(streams)
	sort.SliceStable(byLast, func(i, j int) bool { return byLast[i].last < byLast[j].last })
	lasts := make([]float64, len(byLast))
	for i, s := range byLast {
		s.rank = i
		lasts[i] = s.last
	}
	q := &sequencer{ready: map[int]chan struct{}{}, byLast: byLast, done: make([]bool, len(streams))}
	for _, s := range streams {
		// Every stream that ended before s began has a lower rank than
		// s (s ends no earlier than it begins), so each stream waits only
		// on lower ranks and the order cannot deadlock.
		s.after = sort.SearchFloat64s(lasts, s.first)
		if s.after > 0 && q.ready[s.after] == nil {
			q.ready[s.after] = make(chan struct{})
		}
	}
	return q
}

// bounds sets a stream's first and last times. The trailer is written
// when recording stops, not by the process it happens to name, so it
// does not stretch that process's lifetime.
func bounds(s *stream) {
	set := false
	for _, ev := range s.evs {
		if ev.Op == trace.OpEnd {
			continue
		}
		end := ev.T + max(ev.Dur, 0)
		if !set {
			s.first, s.last, set = ev.T, end, true
		}
		s.first = min(s.first, ev.T)
		s.last = max(s.last, end)
	}
	if !set && len(s.evs) > 0 {
		s.first, s.last = s.evs[0].T, s.evs[0].T
	}
}

// wait blocks until the streams s must follow have finished; false means
// ctx ended first.
func (q *sequencer) wait(ctx context.Context, s *stream, observe func(int, string, []int)) bool {
	if s.after == 0 {
		return true
	}
	if observe != nil {
		pids := make([]int, s.after)
		for i, p := range q.byLast[:s.after] {
			pids[i] = p.pid
		}
		observe(s.pid, "wait", pids)
	}
	select {
	case <-q.ready[s.after]:
		return true
	case <-ctx.Done():
		if observe != nil {
			observe(s.pid, "cancelled", nil)
		}
		return false
	}
}

// finish records that s is done and releases the streams waiting for it
// and everything that ended before it.
func (q *sequencer) finish(s *stream) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.done[s.rank] = true
	for q.upTo < len(q.done) && q.done[q.upTo] {
		q.upTo++
		if ch := q.ready[q.upTo]; ch != nil {
			close(ch)
		}
	}
}

func (r *runner) skip() { r.count(func(res *Result) { res.Skipped++ }) }

func (r *runner) count(f func(*Result)) {
	r.mu.Lock()
	f(&r.res)
	r.mu.Unlock()
}

func (r *runner) done(ev trace.Event, start time.Time, n int64, err error) {
	now := time.Now()
	d := now.Sub(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Ops++
	r.lat[string(ev.Op)] = append(r.lat[string(ev.Op)], float64(d)/1e6)
	if ev.Op == trace.OpRead || ev.Op == trace.OpMmap {
		r.res.Bytes += n
		if n > 0 && !r.gotByte {
			r.gotByte = true
			r.ttfb = now.Sub(r.start)
		}
	}
	switch {
	case err == nil && ev.Err != "":
		r.res.Mismatches++
	case err != nil && ev.Err != "":
		if errors.Is(err, syscall.ENOENT) {
			r.res.ENOENT++
		}
	case err != nil:
		r.res.Errors++
		if len(r.res.FirstErrors) < 10 {
			name := unix.ErrnoName(errnoOf(err))
			r.res.FirstErrors = append(r.res.FirstErrors, fmt.Sprintf("%s %s: %v (%s)", ev.Op, ev.Path, err, name))
		}
	}
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
