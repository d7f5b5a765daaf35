package trace

import (
	"math"
	"reflect"
	"testing"
)

func TestByteSpans(t *testing.T) {
	evs := []Event{
		{Op: OpOpen, Path: "/s/a", Size: 100},
		{Op: OpRead, Path: "/s/a", Off: 0, Len: 64, N: 64},
		{Op: OpRead, Path: "/s/a", Off: 64, Len: 64, N: 36}, // short read: the bytes returned count
		{Op: OpMmap, Path: "/s/a", Off: 4096, Len: 8192},
		{Op: OpRead, Path: "/s/a", Off: 100, Len: 64},                  // EOF: nothing returned
		{Op: OpRead, Path: "/s/a", Off: 0, Len: 10, N: 10, Err: "EIO"}, // failed
		{Op: OpMmap, Path: "/s/a", Off: 0},                             // maps nothing
		{Op: OpRead, Path: "/s/b", Off: -5, Len: 10, N: 10},            // corrupt
		{Op: OpMmap, Path: "/s/b", Off: 0, Len: -1},                    // corrupt
		{Op: OpRead, Off: 0, Len: 10, N: 10},                           // no path
		{Op: OpRead, Path: "/s/c", Off: math.MaxInt64 - 1, N: 10},      // would wrap
		{Op: OpRead, Path: "/s/a", Off: 10, Len: 5, N: 5},
	}
	got := ByteSpans(evs)
	want := map[string]*FileSpans{
		"/s/a": {Reads: []Span{{0, 64}, {64, 100}, {10, 15}}, Maps: []Span{{4096, 12288}}},
		"/s/c": {Reads: []Span{{math.MaxInt64 - 1, math.MaxInt64}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ByteSpans = %v, want %v", got, want)
	}
	a := got["/s/a"]
	if all := a.All(); !reflect.DeepEqual(all, []Span{{0, 64}, {64, 100}, {10, 15}, {4096, 12288}}) {
		t.Errorf("All = %v", all)
	}
	if n := UnionLen(a.All(), math.MaxInt64); n != 100+8192 {
		t.Errorf("distinct bytes = %d, want %d", n, 100+8192)
	}
	if !reflect.DeepEqual(a.Reads, []Span{{0, 64}, {64, 100}, {10, 15}}) {
		t.Errorf("UnionLen of All reordered the file's reads: %v", a.Reads)
	}
	if end := a.ReadEnd(); end != 100 {
		t.Errorf("ReadEnd = %d, want 100", end)
	}
	if end := (&FileSpans{Maps: []Span{{0, 10}}}).ReadEnd(); end != 0 {
		t.Errorf("ReadEnd of a mapped-only file = %d, want 0", end)
	}
}

func TestUnionLen(t *testing.T) {
	for _, c := range []struct {
		spans []Span
		limit int64
		want  int64
	}{
		{nil, 100, 0},
		{[]Span{{0, 10}, {10, 20}}, 100, 20},
		{[]Span{{5, 10}, {0, 3}, {2, 6}}, 100, 10},
		{[]Span{{0, 100}, {50, 60}}, 100, 100},
		{[]Span{{0, 200}, {300, 400}}, 250, 200},
		{[]Span{{7, 7}, {9, 3}}, 100, 0},
		{[]Span{{-5, 5}}, 100, 5},
	} {
		if got := UnionLen(c.spans, c.limit); got != c.want {
			t.Errorf("UnionLen(%v, %d) = %d, want %d", c.spans, c.limit, got, c.want)
		}
	}
}
