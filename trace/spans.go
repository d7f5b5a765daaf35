package trace

import "sort"

// Span is the bytes [Lo, Hi) of a file.
type Span struct{ Lo, Hi int64 }

// FileSpans is what a trace accessed of one file, in trace order.
type FileSpans struct {
	// Reads are [off, off+n) of each successful read: the bytes it
	// returned, not the bytes it asked for.
	Reads []Span
	// Maps are [off, off+len) of each successful mmap: an upper bound on
	// what the mapping touched, as a syscall trace cannot see page faults.
	Maps []Span
}

// All returns the read and mapped spans together, in a new slice, so
// that sorting it (UnionLen does) leaves f as it was.
func (f *FileSpans) All() []Span {
	return append(append(make([]Span, 0, len(f.Reads)+len(f.Maps)), f.Reads...), f.Maps...)
}

// ReadEnd is the end of the furthest read: a lower bound on the file's
// size that holds even when no event reported the size.
func (f *FileSpans) ReadEnd() int64 {
	var end int64
	for _, s := range f.Reads {
		end = max(end, s.Hi)
	}
	return end
}

// ByteSpans returns, per path, the byte spans that the trace's successful
// reads and mmaps accessed. It is the one place that decides which events
// count as bytes accessed, so the summary's distinct bytes, the bench's
// needed bytes and the ranges prefetched from a trace all agree.
//
// It accepts any events, including nonsense from a corrupt file: failed
// operations, events without a path, reads that returned nothing, mmaps
// of nothing and negative offsets are left out, and spans that would run
// past the largest int64 end there instead of wrapping.
func ByteSpans(events []Event) map[string]*FileSpans {
	files := map[string]*FileSpans{}
	file := func(p string) *FileSpans {
		f := files[p]
		if f == nil {
			f = &FileSpans{}
			files[p] = f
		}
		return f
	}
	for _, ev := range events {
		if ev.Err != "" || ev.Path == "" || ev.Off < 0 {
			continue
		}
		switch ev.Op {
		case OpRead:
			if ev.N > 0 {
				f := file(ev.Path)
				f.Reads = append(f.Reads, Span{ev.Off, addSat(ev.Off, ev.N)})
			}
		case OpMmap:
			if ev.Len > 0 {
				f := file(ev.Path)
				f.Maps = append(f.Maps, Span{ev.Off, addSat(ev.Off, ev.Len)})
			}
		}
	}
	return files
}

// UnionLen is the length of the union of spans, each clipped to
// [0, limit): the distinct bytes they cover. It sorts spans in place.
func UnionLen(spans []Span, limit int64) int64 {
	sort.Slice(spans, func(i, j int) bool { return spans[i].Lo < spans[j].Lo })
	var total int64
	cur := Span{-1, -1}
	for _, sp := range spans {
		sp.Lo, sp.Hi = max(sp.Lo, 0), min(sp.Hi, limit)
		if sp.Hi <= sp.Lo {
			continue
		}
		if sp.Lo > cur.Hi {
			if cur.Hi > cur.Lo {
				total = addSat(total, cur.Hi-cur.Lo)
			}
			cur = sp
			continue
		}
		cur.Hi = max(cur.Hi, sp.Hi)
	}
	if cur.Hi > cur.Lo {
		total = addSat(total, cur.Hi-cur.Lo)
	}
	return total
}
