package trace

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// FuzzReader feeds the trace decoder arbitrary bytes: plain JSON Lines,
// zstd frames, torn and corrupt files. Seeds are in testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, Header{Source: "mount", Root: "/m"}, sampleEvents()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()/2])
	f.Add([]byte(`{"format":"jitfs.trace/v1","root":"/s"}` + "\n" + `{"t":1,"op":"read","off":-1,"n":1e300}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, evs, err := ReadAll(bytes.NewReader(b))
		if err != nil {
			return
		}
		if h.Format != Format {
			t.Fatalf("accepted format %q", h.Format)
		}
		for _, ev := range evs {
			if ev.Op == "" {
				t.Fatalf("event without an op: %+v", ev)
			}
		}
		// Whatever decoded must summarise and encode again.
		Summarize(evs, "/s")
		_, again, err := ReadAll(bytes.NewReader(jsonLines(t, h, evs)))
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-read %d of %d events: %v", len(again), len(evs), err)
		}
	})
}

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
		h, evs, st, err := ImportStrace(strings.NewReader(s), ImportOptions{})
		if err != nil {
			return
		}
		if st.Events != len(evs) || h.Root != "/" {
			t.Fatalf("stats %+v for %d events, root %q", st, len(evs), h.Root)
		}
		for i, ev := range evs {
			if clean, ok := CleanAbs(ev.Path); !ok || clean != ev.Path {
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
		Summarize(evs, "")
		_, again, err := ReadAll(bytes.NewReader(jsonLines(t, h, evs)))
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 && !reflect.DeepEqual(again, evs) {
			t.Fatalf("events changed through the format:\n got %+v\nwant %+v", again, evs)
		}
	})
}

// jsonLines encodes a trace as plain JSON Lines, which Reader also
// accepts: JSON is what could mangle an event, and a zstd encoder per run
// would slow the fuzzers tenfold.
func jsonLines(t *testing.T, h Header, evs []Event) []byte {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	if err := enc.Encode(h); err != nil {
		t.Fatalf("encoding the header: %v", err)
	}
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			t.Fatalf("encoding event %d: %v", i, err)
		}
	}
	return out.Bytes()
}
