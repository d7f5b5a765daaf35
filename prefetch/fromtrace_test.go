package prefetch_test

import (
	"reflect"
	"testing"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/trace"
)

func TestWantsFromTrace(t *testing.T) {
	const mib = 1 << 20
	h := trace.Header{Format: trace.Format, Root: "/show/"}
	evs := []trace.Event{
		{Op: trace.OpOpen, Path: "/show/tex/small.tex", Size: 1000},
		{Op: trace.OpRead, Path: "/show/tex/small.tex", Len: 4096, N: 1000},
		{Op: trace.OpOpen, Path: "/show/big.bin", Size: 64 * mib},
		{Op: trace.OpRead, Path: "/show/big.bin", Off: 0, Len: 4096, N: 4096},
		{Op: trace.OpRead, Path: "/show/big.bin", Off: 10*mib + 100, Len: 100, N: 100},
		{Op: trace.OpMmap, Path: "/show/big.bin", Off: 32 * mib, Len: mib},
		{Op: trace.OpRead, Path: "/show/big.bin", Off: 40 * mib, Len: 4096, Err: "EIO"}, // failed: not wanted
		{Op: trace.OpOpen, Path: "/show/most.bin", Size: 16 * mib},
		{Op: trace.OpRead, Path: "/show/most.bin", Off: 0, Len: 10 * mib, N: 10 * mib},
		// No open in the trace: the furthest read makes it large.
		{Op: trace.OpRead, Path: "/show/grown.bin", Off: 20 * mib, Len: 4096, N: 4096},
		{Op: trace.OpOpen, Path: "/show/out.exr", Write: true},
		{Op: trace.OpOpen, Path: "/show/gone", Err: "ENOENT"},
		{Op: trace.OpOpen, Path: "/show/tex", Dir: true},
		{Op: trace.OpOpen, Path: "/show"},
		{Op: trace.OpOpen, Path: "/elsewhere/x", Size: 10},
		{Op: trace.OpRead, Path: "/show/big.bin", Off: 4096, Len: 4096, N: 4096},
	}
	want := []hooks.Want{
		{Rel: "tex/small.tex"},
		{Rel: "big.bin", Ranges: []hooks.Range{{Off: 0, Len: 64 << 10}, {Off: 10 * mib, Len: 64 << 10}, {Off: 32 * mib, Len: mib}}},
		{Rel: "most.bin"}, // more than half of it: whole
		{Rel: "grown.bin", Ranges: []hooks.Range{{Off: 20 * mib, Len: 64 << 10}}},
	}
	if got := prefetch.WantsFromTrace(h, evs); !reflect.DeepEqual(got, want) {
		t.Errorf("WantsFromTrace =\n%+v\nwant\n%+v", got, want)
	}
}
