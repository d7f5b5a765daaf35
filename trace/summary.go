package trace

import (
	"math"
	"sort"
)

// Summary is what a trace did, in numbers: the figures that size a cache
// and tell one workload from another.
type Summary struct {
	// Prefix restricts every figure to paths under it ("" for all).
	Prefix string `json:"prefix,omitempty"`
	// Events counts the events summarised (the end trailer aside).
	Events int64 `json:"events"`
	// Ops counts events per op, including ops this version does not know.
	Ops  map[Op]int64 `json:"ops"`
	Pids int          `json:"pids"`
	// Duration is seconds from the first operation's start to the last
	// one's end.
	Duration float64 `json:"duration"`

	// Opens counts open events, failed ones included; OpenErrors the
	// failed ones; WriteOpens those for writing.
	Opens      int64 `json:"opens"`
	OpenErrors int64 `json:"open_errors"`
	WriteOpens int64 `json:"write_opens"`
	// Files is the number of distinct paths opened successfully, not
	// counting directories, which Dirs counts.
	Files int `json:"files"`
	Dirs  int `json:"dirs"`

	Reads int64 `json:"reads"`
	// BytesRead sums what reads returned; DistinctBytesRead counts each
	// byte of each file once (the union of [off, off+n) per path), so
	// their ratio is the read amplification.
	BytesRead         int64 `json:"bytes_read"`
	DistinctBytesRead int64 `json:"distinct_bytes_read"`
	Mmaps             int64 `json:"mmaps"`
	// MmapBytes sums mapped lengths: an upper bound on what the mappings
	// touched, as a syscall trace cannot see page faults.
	MmapBytes int64 `json:"mmap_bytes"`
	// DistinctBytesAccessed is the union of read and mapped ranges per
	// path, mapped ranges clipped to the file's size when the trace shows
	// it: the bytes a cache must hold to serve the trace.
	DistinctBytesAccessed int64 `json:"distinct_bytes_accessed"`

	// Lookups counts name resolutions: lookup, stat, access and readlink
	// events. Getattrs and Readdirs count their ops.
	Lookups  int64 `json:"lookups"`
	Getattrs int64 `json:"getattrs"`
	Readdirs int64 `json:"readdirs"`
	// ENOENT counts events that failed with ENOENT (negative lookups and
	// failed opens), ENOENTPaths the distinct paths among them, Errors
	// the events that failed with any errno.
	ENOENT      int64 `json:"enoent"`
	ENOENTPaths int   `json:"enoent_paths"`
	Errors      int64 `json:"errors"`

	// Mount traces: how reads were served, and the bytes that waited on
	// GCS.
	CacheHits    int64 `json:"cache_hits"`
	CachePartial int64 `json:"cache_partial"`
	CacheMisses  int64 `json:"cache_misses"`
	FetchedBytes int64 `json:"fetched_bytes"`

	// Recorded and Dropped come from the end trailer of a live trace:
	// events written and events the recorder had to drop. HasEnd says
	// whether there was a trailer; a trace without one was cut short.
	HasEnd   bool  `json:"has_end"`
	Recorded int64 `json:"recorded"`
	Dropped  int64 `json:"dropped"`

	// TopFiles are the files with the most bytes read or mapped, at most
	// ten, largest first.
	TopFiles []FileSummary `json:"top_files,omitempty"`
}

// FileSummary is one file's share of a trace.
type FileSummary struct {
	Path string `json:"path"`
	// Size is the largest size any event saw, 0 if none did.
	Size              int64 `json:"size,omitempty"`
	Opens             int64 `json:"opens"`
	Reads             int64 `json:"reads"`
	BytesRead         int64 `json:"bytes_read"`
	DistinctBytesRead int64 `json:"distinct_bytes_read"`
	MmapBytes         int64 `json:"mmap_bytes,omitempty"`
}

const topFiles = 10

// Summarize adds up events, restricted to paths under prefix when it is
// not empty. It accepts any events, including nonsense from a corrupt
// file: negative offsets and lengths are left out of the byte figures.
func Summarize(events []Event, prefix string) Summary {
	s := Summary{Ops: map[Op]int64{}}
	if prefix != "" && prefix != "/" {
		s.Prefix = prefix
	}
	files := map[string]*FileSummary{}
	file := func(p string) *FileSummary {
		f := files[p]
		if f == nil {
			f = &FileSummary{Path: p}
			files[p] = f
		}
		return f
	}
	pids := map[int]bool{}
	opened, dirs, enoent := map[string]bool{}, map[string]bool{}, map[string]bool{}
	first, last := math.Inf(1), math.Inf(-1)
	for _, ev := range events {
		if ev.Op == OpEnd {
			s.HasEnd = true
			s.Recorded = addSat(s.Recorded, ev.Events)
			s.Dropped = addSat(s.Dropped, ev.Dropped)
			continue
		}
		if s.Prefix != "" && (ev.Path == "" || !Under(ev.Path, s.Prefix)) {
			continue
		}
		s.Events++
		s.Ops[ev.Op]++
		pids[ev.Pid] = true
		if ev.T < first {
			first = ev.T
		}
		if end := ev.T + max(ev.Dur, 0); end > last {
			last = end
		}
		if ev.Err != "" {
			s.Errors++
			if ev.Err == "ENOENT" {
				s.ENOENT++
				enoent[ev.Path] = true
			}
		}
		var f *FileSummary
		if ev.Path != "" {
			f = file(ev.Path)
			if ev.Size > f.Size {
				f.Size = ev.Size
			}
		}
		switch ev.Op {
		case OpOpen:
			s.Opens++
			if ev.Write {
				s.WriteOpens++
			}
			if ev.Err != "" {
				s.OpenErrors++
				break
			}
			if f != nil {
				f.Opens++
				if ev.Dir {
					dirs[ev.Path] = true
				} else {
					opened[ev.Path] = true
				}
			}
		case OpRead:
			s.Reads++
			switch ev.Cache {
			case "hit":
				s.CacheHits++
			case "partial":
				s.CachePartial++
			case "miss":
				s.CacheMisses++
			}
			if ev.Fetched > 0 {
				s.FetchedBytes = addSat(s.FetchedBytes, ev.Fetched)
			}
			if f != nil {
				f.Reads++
			}
			if ev.Err != "" || ev.N <= 0 || ev.Off < 0 {
				break
			}
			s.BytesRead = addSat(s.BytesRead, ev.N)
			if f != nil {
				f.BytesRead = addSat(f.BytesRead, ev.N)
			}
		case OpMmap:
			s.Mmaps++
			if ev.Err != "" || ev.Len <= 0 || ev.Off < 0 {
				break
			}
			s.MmapBytes = addSat(s.MmapBytes, ev.Len)
			if f != nil {
				f.MmapBytes = addSat(f.MmapBytes, ev.Len)
			}
		case OpLookup, OpStat, OpAccess, OpReadlink:
			s.Lookups++
		case OpGetattr:
			s.Getattrs++
		case OpReaddir:
			s.Readdirs++
		}
	}
	s.Pids = len(pids)
	s.Files, s.Dirs, s.ENOENTPaths = len(opened), len(dirs), len(enoent)
	if s.Events > 0 {
		s.Duration = last - first
	}
	// files holds only paths under the prefix, so spans of other paths
	// are never looked at.
	spans := ByteSpans(events)
	var top []FileSummary
	for p, f := range files {
		sp := spans[p]
		if sp == nil {
			sp = &FileSpans{}
		}
		f.DistinctBytesRead = UnionLen(sp.Reads, math.MaxInt64)
		s.DistinctBytesRead = addSat(s.DistinctBytesRead, f.DistinctBytesRead)
		limit := int64(math.MaxInt64)
		if f.Size > 0 {
			limit = f.Size
		}
		s.DistinctBytesAccessed = addSat(s.DistinctBytesAccessed, UnionLen(sp.All(), limit))
		if f.BytesRead > 0 || f.MmapBytes > 0 {
			top = append(top, *f)
		}
	}
	sort.Slice(top, func(i, j int) bool {
		a, b := addSat(top[i].BytesRead, top[i].MmapBytes), addSat(top[j].BytesRead, top[j].MmapBytes)
		if a != b {
			return a > b
		}
		return top[i].Path < top[j].Path
	})
	if len(top) > topFiles {
		top = top[:topFiles]
	}
	s.TopFiles = top
	return s
}

// addSat adds non-negative counters without wrapping on hostile input.
func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
