package trace

import (
	"encoding/json"
	"math"
	"testing"
)

func TestSummarizeMountTrace(t *testing.T) {
	evs := []Event{
		{T: 0, Pid: 7, Op: OpLookup, Path: "/mnt/tex", Dur: 0.001},
		{T: 0.1, Pid: 7, Op: OpLookup, Path: "/mnt/nope.exr", Err: "ENOENT"},
		{T: 0.2, Pid: 7, Op: OpLookup, Path: "/mnt/nope.exr", Err: "ENOENT"},
		{T: 0.3, Pid: 7, Op: OpGetattr, Path: "/mnt/tex/a.exr", Size: 1000},
		{T: 0.4, Pid: 7, Op: OpOpen, Path: "/mnt/tex/a.exr", Fh: 1},
		{T: 0.5, Pid: 8, Op: OpRead, Path: "/mnt/tex/a.exr", Fh: 1, Len: 600, N: 600, Cache: "miss", Fetched: 600},
		{T: 0.6, Pid: 8, Op: OpRead, Path: "/mnt/tex/a.exr", Fh: 1, Off: 500, Len: 600, N: 500, Cache: "partial", Fetched: 400},
		{T: 0.7, Pid: 9, Op: OpRead, Path: "/mnt/tex/a.exr", Fh: 1, Len: 600, N: 600, Cache: "hit", Dur: 0.5},
		{T: 0.8, Pid: 9, Op: OpRead, Path: "/mnt/tex/a.exr", Fh: 1, Off: -5, Len: -1, N: -1}, // corrupt: no bytes
		{T: 0.9, Pid: 9, Op: OpRead, Path: "/mnt/tex/a.exr", Fh: 1, Off: math.MaxInt64 - 1, N: 10},
		{T: 1.0, Pid: 9, Op: OpMmap, Path: "/mnt/tex/a.exr", Fh: 1, Len: 4096},
		{T: 1.1, Pid: 7, Op: OpReaddir, Path: "/mnt/tex", N: 3},
		{T: 1.2, Pid: 7, Op: OpRelease, Path: "/mnt/tex/a.exr", Fh: 1},
		{T: 1.3, Pid: 7, Op: "prefetch", Path: "/mnt/tex/b.exr"}, // an op from a future version
		{T: 1.4, Pid: 7, Op: OpOpen, Path: "/other/x", Fh: 2},
		{T: 1.5, Op: OpEnd, Events: 16, Dropped: 3},
	}
	s := Summarize(evs, "/mnt")
	if s.Events != 14 || s.Pids != 3 || s.Lookups != 3 || s.Getattrs != 1 || s.ENOENT != 2 || s.ENOENTPaths != 1 ||
		s.Opens != 1 || s.Files != 1 || s.Reads != 5 || s.Readdirs != 1 || s.Ops["prefetch"] != 1 || s.Ops[OpRelease] != 1 {
		t.Errorf("counts: %+v", s)
	}
	if s.CacheMisses != 1 || s.CachePartial != 1 || s.CacheHits != 1 || s.FetchedBytes != 1000 {
		t.Errorf("cache: %+v", s)
	}
	// The read at MaxInt64-1 is clipped rather than wrapping.
	if s.BytesRead != 1710 || s.DistinctBytesRead != 1000+1 || s.DistinctBytesAccessed != 1000 || s.MmapBytes != 4096 {
		t.Errorf("bytes: read %d distinct %d accessed %d mmap %d", s.BytesRead, s.DistinctBytesRead, s.DistinctBytesAccessed, s.MmapBytes)
	}
	if !s.HasEnd || s.Recorded != 16 || s.Dropped != 3 || s.Duration != 1.3 {
		t.Errorf("trailer and duration: %+v", s)
	}
	all := Summarize(evs, "")
	if all.Events != 15 || all.Files != 2 || all.Prefix != "" {
		t.Errorf("unrestricted: %+v", all)
	}
	if Summarize(evs, "/").Events != 15 {
		t.Error(`prefix "/" should keep everything`)
	}
}

func TestSummaryJSONKeys(t *testing.T) {
	b, err := json.Marshal(Summarize(sampleEvents(), ""))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	// Scripts (testdata/traces/build.sh) read these by name.
	for _, k := range []string{"events", "opens", "reads", "bytes_read", "enoent", "files", "dropped", "duration", "pids", "mmap_bytes", "cache_hits", "fetched_bytes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	if m["bytes_read"] != float64(131072) || m["enoent"] != float64(1) || m["files"] != float64(1) {
		t.Errorf("values: %s", b)
	}
}

func TestSummarizeEmpty(t *testing.T) {
	s := Summarize(nil, "/x")
	if s.Events != 0 || s.Duration != 0 || s.TopFiles != nil {
		t.Errorf("%+v", s)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Error(err)
	}
}
