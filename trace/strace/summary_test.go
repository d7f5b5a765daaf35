package strace

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/trace"
)

// The figures below are worked out by hand from the comments in
// testdata/sample.c.
func TestSummarizeSample(t *testing.T) {
	_, evs, _ := importSample(t, "")
	s := trace.Summarize(evs, sampleRoot)
	got := map[string]int64{
		"events": s.Events, "pids": int64(s.Pids), "opens": s.Opens, "open_errors": s.OpenErrors,
		"write_opens": s.WriteOpens, "files": int64(s.Files), "dirs": int64(s.Dirs), "reads": s.Reads,
		"bytes_read": s.BytesRead, "distinct_bytes_read": s.DistinctBytesRead, "mmaps": s.Mmaps,
		"mmap_bytes": s.MmapBytes, "distinct_bytes_accessed": s.DistinctBytesAccessed, "lookups": s.Lookups,
		"readdirs": s.Readdirs, "enoent": s.ENOENT, "enoent_paths": int64(s.ENOENTPaths), "errors": s.Errors,
	}
	want := map[string]int64{
		"events": 49, "pids": 4,
		// a.exr three times, b.vdb twice, sub/c.png, the quoted name,
		// out.log (for writing) and two directories.
		"opens": 10, "open_errors": 0, "write_opens": 1, "files": 5, "dirs": 2,
		// a.exr 5566 + 90 (readv), b.vdb 30, sub/c.png 2000, quoted 100.
		"reads": 19, "bytes_read": 7786,
		// a.exr [0,4196) [8000,8050) [9000,10000) = 5246, b.vdb [0,20),
		// sub/c.png 2000, quoted 100.
		"distinct_bytes_read": 7366,
		"mmaps":               2, "mmap_bytes": 12288,
		// b.vdb's mappings cover all 8192 of its bytes.
		"distinct_bytes_accessed": 5246 + 8192 + 2000 + 100,
		"lookups":                 8, "readdirs": 1, "enoent": 1, "enoent_paths": 1, "errors": 1,
	}
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s = %d, want %d", k, got[k], want[k])
			}
		}
	}
	if s.Ops[trace.OpRead] != 19 || s.Ops[trace.OpClose] != 9 || s.Ops[trace.OpStat] != 3 {
		t.Errorf("ops = %v", s.Ops)
	}
	last := evs[len(evs)-1]
	if d := last.T + last.Dur - evs[0].T; s.Duration <= 0 || s.Duration > d {
		t.Errorf("duration = %v, events span %v", s.Duration, d)
	}
	var top []string
	for _, f := range s.TopFiles {
		top = append(top, strings.TrimPrefix(f.Path, sampleRoot+"/"))
	}
	if !reflect.DeepEqual(top, []string{"b.vdb", "a.exr", "sub/c.png", "q\"uote\\d é.txt"}) {
		t.Errorf("top files = %q", top)
	}
	if a := s.TopFiles[1]; a.Opens != 3 || a.Reads != 12 || a.BytesRead != 5656 || a.DistinctBytesRead != 5246 || a.Size != 10000 {
		t.Errorf("a.exr = %+v", a)
	}
	if s.HasEnd || s.CacheHits+s.CacheMisses+s.CachePartial != 0 {
		t.Errorf("an import has no trailer or cache outcomes: %+v", s)
	}
}
