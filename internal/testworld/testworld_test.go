package testworld_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/jitfs/jitfs/internal/testworld"
)

func TestWorldServesThroughTheProxy(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	want := w.PutRandom("a/b", 100_003)
	a := w.Stat(t, "a/b")
	if a.Size != int64(len(want)) || a.Generation == 0 || !a.HasCRC32C {
		t.Fatalf("stat: %+v", a)
	}
	got := make([]byte, 1000)
	if err := w.GCS.ReadRange(context.Background(), "a/b", a.Generation, 99_000, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[99_000:100_000]) {
		t.Fatal("wrong bytes")
	}
	if w.Proxy.Stats.Load() != 1 || w.Proxy.MediaReqs.Load() != 1 || w.Proxy.MediaBytes.Load() != 1000 {
		t.Fatalf("proxy saw %d stats, %d media requests, %d media bytes; want 1, 1, 1000",
			w.Proxy.Stats.Load(), w.Proxy.MediaReqs.Load(), w.Proxy.MediaBytes.Load())
	}
}

func TestRandBytesDependsOnSeedAndSize(t *testing.T) {
	a := testworld.RandBytes("x", 1001)
	if !bytes.Equal(a, testworld.RandBytes("x", 1001)) {
		t.Fatal("not deterministic")
	}
	if bytes.Equal(a[:1000], testworld.RandBytes("y", 1000)) || bytes.Equal(a, testworld.RandBytes("y", 1001)) {
		t.Fatal("same bytes for different seeds")
	}
	if bytes.Equal(a[:1000], testworld.RandBytes("x", 1000)) {
		t.Fatal("same bytes for different sizes")
	}
}
