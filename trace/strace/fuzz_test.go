package strace

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/trace"
	"github.com/jitfs/jitfs/trace/internal/tracetest"
)

// FuzzImportStrace feeds the importer arbitrary text. It must never
// panic, and whatever it emits must be a valid trace: clean absolute
// paths, no negative offsets or lengths, finite times, and events that
// survive encoding unchanged. Seeds are in testdata/fuzz/FuzzImportStrace.
func FuzzImportStrace(f *testing.F) {
	f.Add(strace(
		`1 openat(AT_FDCWD</s>, "a\"b\303\251", O_RDONLY) = 3</s/a\"b\303\251>`,
		`1 read(3</s/a\"b\303\251>,  <unfinished ...>`,
		`2 <... read resumed>""..., 10) = 10 <0.1>`,
		`1 <... read resumed>""..., 10) = 10 <0.1>`,
		`1 clone3({flags=CLONE_VM|CLONE_FILES} => {parent_tid=[2]}, 88) = 2`,
		`2 lseek(3, -5, SEEK_END) = 9223372036854775807`,
		`2 read(3, ""..., 10) = 10`,
	))
	f.Fuzz(func(t *testing.T, s string) {
		h, evs, st, err := Import(strings.NewReader(s), Options{})
		if err != nil {
			return
		}
		if st.Events != len(evs) || h.Root != "/" {
			t.Fatalf("stats %+v for %d events, root %q", st, len(evs), h.Root)
		}
		for i, ev := range evs {
			if clean, ok := trace.CleanAbs(ev.Path); !ok || clean != ev.Path {
				t.Fatalf("event %d: path %q is not clean and absolute", i, ev.Path)
			}
			if ev.Off < 0 || ev.Len < 0 || ev.N < 0 || ev.Size < 0 {
				t.Fatalf("event %d: negative off/len/n/size: %+v", i, ev)
			}
			if ev.T < 0 || ev.Dur < 0 || math.IsInf(ev.T, 0) || math.IsNaN(ev.Dur) || math.IsInf(ev.Dur, 0) {
				t.Fatalf("event %d: bad time: %+v", i, ev)
			}
			if i > 0 && ev.T < evs[i-1].T {
				t.Fatalf("event %d: out of time order", i)
			}
		}
		trace.Summarize(evs, "")
		_, again, err := trace.ReadAll(bytes.NewReader(tracetest.JSONLines(t, h, evs)))
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 && !reflect.DeepEqual(again, evs) {
			t.Fatalf("events changed through the format:\n got %+v\nwant %+v", again, evs)
		}
	})
}
