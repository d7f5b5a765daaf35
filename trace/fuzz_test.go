package trace

import (
	"bytes"
	"testing"

	"github.com/jitfs/jitfs/trace/internal/tracetest"
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
		_, again, err := ReadAll(bytes.NewReader(tracetest.JSONLines(t, h, evs)))
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-read %d of %d events: %v", len(again), len(evs), err)
		}
	})
}
