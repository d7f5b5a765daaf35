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

	mu      sync.Mutex
	res     Result
	lat     map[string][]float64
	ttfb    time.Duration
	gotByte bool
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
		lat: map[string][]float64{}}
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
