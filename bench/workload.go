package bench

import (
	"fmt"
	"math/rand/v2"
	"path"
	"strings"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/trace"
)

// Workload is one trace to replay, with the bucket it needs.
type Workload struct {
	Name   string
	Header trace.Header
	Events []trace.Event
	// Files maps each path relative to the trace root to its size.
	Files map[string]int64
	// Needed is the number of distinct bytes the workload reads.
	Needed int64
	// Prefetch is what the "jitfs cold + prefetch" strategy asks the
	// engine for before the replay starts, and PrefetchFrom names where
	// it came from: the workload's own trace (a submitter's manifest),
	// or the previous frame's trace (what a node learns from frame N-1).
	Prefetch     []hooks.Want
	PrefetchFrom string
}

// PrefetchFromTrace makes w prefetch what another recorded frame read.
func (w *Workload) PrefetchFromTrace(name string, h trace.Header, evs []trace.Event) {
	w.Prefetch = prefetch.WantsFromTrace(h, evs)
	w.PrefetchFrom = name
}

// rel returns p relative to root, or false when p is outside it.
func rel(root, p string) (string, bool) {
	if !trace.Under(p, root) {
		return "", false
	}
	r := strings.TrimPrefix(strings.TrimPrefix(p, strings.TrimSuffix(root, "/")), "/")
	return r, r != ""
}

// NewWorkload derives the files a trace touched and their sizes. A file's
// size is the largest the trace saw: a stat or open that reported it, or
// the end of the furthest successful read. Paths that only ever failed to
// resolve are left out, so the rebuilt bucket fails them the same way.
func NewWorkload(name string, h trace.Header, evs []trace.Event) (*Workload, error) {
	if h.Root == "" || h.Root == "/" {
		return nil, fmt.Errorf("workload %s: the trace has no data root (import it with --prefix)", name)
	}
	w := &Workload{Name: name, Header: h, Events: evs, Files: map[string]int64{}}
	dirs := map[string]bool{}
	for _, ev := range evs {
		if ev.Err != "" || ev.Path == "" || ev.Write {
			continue
		}
		r, ok := rel(h.Root, ev.Path)
		if !ok {
			continue
		}
		if ev.Dir || ev.Op == trace.OpReaddir {
			dirs[r] = true
			continue
		}
		size := w.Files[r]
		switch ev.Op {
		case trace.OpOpen, trace.OpStat, trace.OpLookup, trace.OpGetattr:
			size = max(size, ev.Size)
			if _, seen := w.Files[r]; !seen {
				w.Files[r] = size
			}
		case trace.OpRead:
			if ev.N > 0 {
				size = max(size, ev.Off+ev.N)
			}
		case trace.OpMmap:
			// Mapped: the bucket holds it, at the size seen so far.
		default:
			continue
		}
		w.Files[r] = size
	}
	// A name that holds other files is a directory, whatever a stat of it
	// reported: GCS cannot hold an object and a prefix at one name, and
	// the tree must resolve the children.
	for f := range w.Files {
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		delete(w.Files, d)
	}
	w.PrefetchFromTrace(name, h, evs)
	// The bytes read or mapped of each file the bucket holds, clipped to
	// its size: a mapping past the end reads nothing over the link.
	for p, sp := range trace.ByteSpans(evs) {
		r, ok := rel(h.Root, p)
		if !ok {
			continue
		}
		if size, ok := w.Files[r]; ok {
			w.Needed += trace.UnionLen(sp.All(), size)
		}
	}
	return w, nil
}

// Bytes is the total size of the workload's files (what pre-sync copies).
func (w *Workload) Bytes() int64 {
	var n int64
	for _, s := range w.Files {
		n += s
	}
	return n
}

// Content returns deterministic, incompressible bytes for a file, so
// every strategy reads the same data and compression cannot flatter one.
func Content(name string, size int64) []byte {
	var seed uint64
	for _, c := range []byte(name) {
		seed = seed*131 + uint64(c)
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24),
		byte(seed >> 32), byte(seed >> 40), byte(seed >> 48), byte(seed >> 56)})
	b := make([]byte, size)
	r.Read(b)
	return b
}

const synthRoot = "/synthetic"

func synth(name string, evs []trace.Event) *Workload {
	h := trace.Header{Format: trace.Format, Source: "synthetic", Root: synthRoot, Note: name}
	w, err := NewWorkload(name, h, evs)
	if err != nil {
		panic(err) // the generators below never clash
	}
	return w
}

// SequentialLarge reads one file of size bytes front to back in 1 MiB
// reads, as a renderer reads a big cache or a scanline EXR.
func SequentialLarge(size int64) *Workload {
	p := synthRoot + "/cache/big.bin"
	evs := []trace.Event{{Pid: 1, Op: trace.OpOpen, Path: p, Fh: 3, Size: size}}
	for off := int64(0); off < size; off += 1 << 20 {
		n := min(1<<20, size-off)
		evs = append(evs, trace.Event{Pid: 1, Op: trace.OpRead, Path: p, Fh: 3, Off: off, Len: 1 << 20, N: n})
	}
	evs = append(evs, trace.Event{Pid: 1, Op: trace.OpClose, Path: p, Fh: 3})
	return synth("sequential-large", evs)
}

// SmallFiles stats, opens and reads count files of size bytes in 20
// directories, split
// across readers processes, as a renderer loading thousands of textures
// and includes does.
func SmallFiles(count, size, readers int) *Workload {
	var evs []trace.Event
	for i := 0; i < count; i++ {
		pid := 1 + i%readers
		p := fmt.Sprintf("%s/tex/d%02d/t%05d.tx", synthRoot, i%20, i)
		evs = append(evs,
			trace.Event{Pid: pid, Op: trace.OpStat, Path: p, Size: int64(size)},
			trace.Event{Pid: pid, Op: trace.OpOpen, Path: p, Fh: 3, Size: int64(size)},
			trace.Event{Pid: pid, Op: trace.OpRead, Path: p, Fh: 3, Len: int64(size), N: int64(size)},
			trace.Event{Pid: pid, Op: trace.OpClose, Path: p, Fh: 3})
	}
	return synth(fmt.Sprintf("small-files-%dx%d", count, readers), evs)
}

// RandomSmall makes reads 4 KiB reads at random offsets of one large
// file, as a reader of a tiled texture or a point cache does.
func RandomSmall(size int64, reads int) *Workload {
	p := synthRoot + "/cache/points.mdd"
	rng := rand.New(rand.NewPCG(1, 2))
	evs := []trace.Event{{Pid: 1, Op: trace.OpOpen, Path: p, Fh: 3, Size: size}}
	for i := 0; i < reads; i++ {
		off := rng.Int64N(size/4096) * 4096
		evs = append(evs, trace.Event{Pid: 1, Op: trace.OpRead, Path: p, Fh: 3, Off: off, Len: 4096, N: 4096})
	}
	evs = append(evs, trace.Event{Pid: 1, Op: trace.OpClose, Path: p, Fh: 3})
	return synth("random-small", evs)
}

// AddShow adds the rest of the show: files under the trace's root that the
// traced render never touched. Pre-sync copies them all, which is the cost
// jitfs exists to avoid, so a bench without them would flatter pre-sync.
// Sizes the show lists win over sizes inferred from the trace.
func (w *Workload) AddShow(files map[string]int64) {
	dirs := map[string]bool{}
	for f := range w.Files {
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for f, size := range files {
		if dirs[f] {
			continue
		}
		w.Files[f] = size
	}
}

// ReadShow parses a show listing: one "relative/path<TAB>size" per line,
// as testdata/traces/corpus.tsv holds for the checked-in traces.
func ReadShow(text string) (map[string]int64, error) {
	files := map[string]int64{}
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, sz, ok := strings.Cut(line, "\t")
		var size int64
		if _, err := fmt.Sscan(sz, &size); !ok || err != nil || size < 0 {
			return nil, fmt.Errorf("show listing line %d: want PATH<TAB>SIZE, got %q", i+1, line)
		}
		if clean := path.Clean(name); clean != name || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "../") || name == ".." {
			return nil, fmt.Errorf("show listing line %d: %q is not a clean relative path", i+1, name)
		}
		files[name] = size
	}
	return files, nil
}
