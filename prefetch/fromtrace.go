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
		size  int64
		spans [][2]int64
	}
	files := map[string]*file{}
	var order []string
	root := strings.TrimSuffix(h.Root, "/")
	get := func(rel string) *file {
		f := files[rel]
		if f == nil {
			f = &file{}
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
			f := get(rel)
			f.size = max(f.size, ev.Size)
		case trace.OpRead:
			if ev.N > 0 {
				f := get(rel)
				f.spans = append(f.spans, [2]int64{ev.Off, ev.Off + ev.N})
				f.size = max(f.size, ev.Off+ev.N)
			}
		case trace.OpMmap:
			f := get(rel)
			f.spans = append(f.spans, [2]int64{ev.Off, ev.Off + ev.Len})
		}
	}
	var ws []hooks.Want
	for _, rel := range order {
		f := files[rel]
		w := hooks.Want{Rel: rel}
		if f.size > LargeFile && len(f.spans) > 0 {
			w.Ranges = MergeRanges(f.spans, 64<<10)
			var n int64
			for _, r := range w.Ranges {
				n += r.Len
			}
			if n > f.size/2 {
				w.Ranges = nil // most of it: whole, in big parts
			}
		}
		ws = append(ws, w)
	}
	return ws
}

// MergeRanges rounds spans out to align and merges those that touch.
func MergeRanges(spans [][2]int64, align int64) []hooks.Range {
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var out []hooks.Range
	for _, s := range spans {
		start, end := s[0]/align*align, (s[1]+align-1)/align*align
		if n := len(out); n > 0 && start <= out[n-1].Off+out[n-1].Len {
			out[n-1].Len = max(out[n-1].Len, end-out[n-1].Off)
			continue
		}
		out = append(out, hooks.Range{Off: start, Len: end - start})
	}
	return out
}
