package tracetest

import (
	"bytes"
	"encoding/json"
	"testing"
)

// JSONLines encodes a trace (its header h, then evs, one per line) as
// plain JSON Lines, which trace.Reader also accepts. The fuzzers use it
// rather than trace.Write: JSON is what could mangle an event, and a zstd
// encoder per run would slow the fuzzers tenfold.
func JSONLines[E any](t testing.TB, h any, evs []E) []byte {
	t.Helper()
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
