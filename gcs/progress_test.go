package gcs_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jitfs/jitfs/internal/progress"
)

// TestReadRangeCountsProgress: a read counts the bytes it delivered into
// the context's counter, each once, though a truncated body was resumed,
// and from zero whatever the counter held (an earlier attempt's bytes).
func TestReadRangeCountsProgress(t *testing.T) {
	w := setup(t)
	ctx := context.Background()
	w.PutRandom("o", 1<<20)
	a := w.Stat(t, "o")
	var n atomic.Int64
	n.Store(12345)
	w.Proxy.TruncateMedia.Store(1)
	p := make([]byte, 1<<20)
	if err := w.GCS.ReadRange(progress.With(ctx, &n), "o", a.Generation, 0, p); err != nil {
		t.Fatal(err)
	}
	if n.Load() != int64(len(p)) {
		t.Fatalf("counted %d bytes of a %d-byte read", n.Load(), len(p))
	}
	// Without a counter, reading costs nothing more and counts nowhere.
	if err := w.GCS.ReadRange(ctx, "o", a.Generation, 0, p); err != nil || n.Load() != int64(len(p)) {
		t.Fatalf("read without a counter: %v, counter %d", err, n.Load())
	}
}
