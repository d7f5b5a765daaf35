package prefetch

import (
	"sort"
	"strings"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/trace"
)

// LargeFile is the size above which a trace's read ranges are prefetched
// rather than the whole file: mmapped libraries, tiled textures and point
// caches read a few percent of themselves.
const LargeFile = 8 << 20

// WantsFromTrace lists what a recorded frame read, relative to the trace's
// root, in first-use order: whole files, or for a large file of which the
// trace read less than half, the ranges it read (rounded out to 64 KiB
// blocks). Writes, failed lookups and directories are left out.
func WantsFromTrace(h trace.Header, evs []trace.Event) []hooks.Want {
	type file struct {
		path string // as the trace names it, to find its spans
		size int64  // the largest an open reported
	}
	files := map[string]*file{}
	var order []string
	root := strings.TrimSuffix(h.Root, "/")
	get := func(rel, path string) *file {
		f := files[rel]
		if f == nil {
			f = &file{path: path}
			files[rel] = f
			order = append(order, rel)
		}
		return f
	}
	for _, ev := range evs {
		if ev.Err != "" || ev.Write || ev.Dir || ev.Path == root || !trace.Under(ev.Path, root) {
			continue
		}
		rel := strings.TrimPrefix(ev.Path[len(root):], "/")
		switch ev.Op {
		case trace.OpOpen:
			f := get(rel, ev.Path)
			f.size = max(f.size, ev.Size)
		case trace.OpRead:
			if ev.N > 0 {
				get(rel, ev.Path)
			}
		case trace.OpMmap:
			get(rel, ev.Path)
		}
	}
	spans := trace.ByteSpans(evs)
	var ws []hooks.Want
	for _, rel := range order {
		f := files[rel]
		w := hooks.Want{Rel: rel}
		if sp := spans[f.path]; sp != nil {
			// The trace need not show an open that reported the size;
			// the furthest read bounds it from below.
			size := max(f.size, sp.ReadEnd())
			if all := sp.All(); size > LargeFile && len(all) > 0 {
				w.Ranges = MergeRanges(all, 64<<10)
				var n int64
				for _, r := range w.Ranges {
					n += r.Len
				}
				if n > size/2 {
					w.Ranges = nil // most of it: whole, in big parts
				}
			}
		}
		ws = append(ws, w)
	}
	return ws
}

// MergeRanges rounds spans out to align and merges those that touch. It
// sorts spans in place.
func MergeRanges(spans []trace.Span, align int64) []hooks.Range {
	sort.Slice(spans, func(i, j int) bool { return spans[i].Lo < spans[j].Lo })
	var out []hooks.Range
	for _, s := range spans {
		start, end := s.Lo/align*align, (s.Hi+align-1)/align*align
		if n := len(out); n > 0 && start <= out[n-1].Off+out[n-1].Len {
			out[n-1].Len = max(out[n-1].Len, end-out[n-1].Off)
			continue
		}
		out = append(out, hooks.Range{Off: start, Len: end - start})
	}
	return out
}
