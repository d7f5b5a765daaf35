package cache_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

// waitFor polls for something the cache does in the background.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFetchMakesResidentAndCostsNothingTwice prefetches a whole large
// object and a range of another, then reads them: the reads are hits and
// a second Fetch of resident data makes no request.
func TestFetchMakesResidentAndCostsNothingTwice(t *testing.T) {
	e := newEnv(t)
	c := newCache(t, filepath.Join(t.TempDir(), "c"), 1<<30)
	big, mBig := e.put(t, "cache/big.bin", 20<<20)
	_, mLib := e.put(t, "lib/props.blend", 12<<20)
	small, mSmall := e.put(t, "tex/small.png", 100_000)
	ctx := context.Background()

	h, err := c.Open(mBig, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	n, err := h.Fetch(ctx, 0, h.Size())
	if err != nil || n != 20<<20 || !h.Resident(0, h.Size()) {
		t.Fatalf("fetch whole: %d bytes, err %v, resident %v", n, err, h.Resident(0, h.Size()))
	}
	reqs := e.Proxy.MediaReqs.Load()
	if n, err := h.Fetch(ctx, 0, h.Size()); err != nil || n != 0 || e.Proxy.MediaReqs.Load() != reqs {
		t.Fatalf("second fetch: %d bytes, %d requests, err %v", n, e.Proxy.MediaReqs.Load()-reqs, err)
	}
	buf := make([]byte, 1<<20)
	if _, err := h.ReadAt(ctx, buf, 7<<20); err != nil || !bytes.Equal(buf, big[7<<20:8<<20]) {
		t.Fatalf("read after fetch: %v", err)
	}
	if e.Proxy.MediaReqs.Load() != reqs || c.Stats.Misses.Load() != 0 {
		t.Fatalf("read after fetch went to GCS")
	}

	// A range of a large file (a library's header and one block):
	// only about that much crosses the link.
	hl, err := c.Open(mLib, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	before := e.Proxy.MediaBytes.Load()
	if _, err := hl.Fetch(ctx, 5<<20, 5<<20+4096); err != nil {
		t.Fatal(err)
	}
	if got := e.Proxy.MediaBytes.Load() - before; got > 64<<10 {
		t.Errorf("fetching 4 KiB of a 12 MiB file moved %d bytes", got)
	}
	if !hl.Resident(5<<20, 5<<20+4096) || hl.Resident(0, 4096) {
		t.Error("residency of the fetched range is wrong")
	}

	// A small object is fetched whole and verified.
	hs, err := c.Open(mSmall, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	if _, err := hs.Fetch(ctx, 10, 20); err != nil || !hs.Resident(0, hs.Size()) {
		t.Fatalf("small object not fetched whole: %v", err)
	}
	got := make([]byte, len(small))
	if _, err := hs.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, small) {
		t.Fatal("small object bytes differ")
	}
	if c.Stats.PrefetchedBytes.Load() < 20<<20+100_000 {
		t.Errorf("prefetched bytes = %d", c.Stats.PrefetchedBytes.Load())
	}
}

// TestFetchFailureIsReported: a GCS outage fails the fetch with an error
// and marks nothing resident.
func TestFetchFailureIsReported(t *testing.T) {
	e := newEnv(t)
	c := newCache(t, filepath.Join(t.TempDir(), "c"), 1<<30)
	_, m := e.put(t, "a.bin", 3<<20)
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e.Proxy.Outage.Store(true)
	if _, err := h.Fetch(context.Background(), 0, h.Size()); err == nil {
		t.Fatal("fetch during an outage succeeded")
	}
	if h.Resident(0, 1) {
		t.Fatal("failed fetch left data marked resident")
	}
	e.Proxy.Outage.Store(false)
	if n, err := h.Fetch(context.Background(), 0, h.Size()); err != nil || n != 3<<20 {
		t.Fatalf("after the outage: %d, %v", n, err)
	}
}

// TestWasteAndDemote: an object prefetched and evicted unread counts as
// waste; a demoted object is evicted before older ones.
func TestWasteAndDemote(t *testing.T) {
	e := newEnv(t)
	c := newCache(t, filepath.Join(t.TempDir(), "c"), 8<<20)
	ctx := context.Background()
	for i, name := range []string{"old.bin", "demoted.bin", "read.bin"} {
		_, m := e.put(t, name, 2<<20+i)
		h, err := c.Open(m, e.GCS)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Fetch(ctx, 0, h.Size()); err != nil {
			t.Fatal(err)
		}
		if name == "read.bin" {
			h.ReadAt(ctx, make([]byte, 10), 0)
		}
		if name == "demoted.bin" {
			h.Demote()
		}
		h.Close()
	}
	// Push the cache over its budget so eviction runs.
	_, m := e.put(t, "new.bin", 5<<19)
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Fetch(ctx, 0, h.Size()); err != nil {
		t.Fatal(err)
	}
	h.Close()
	waitFor(t, func() bool { return c.Stats.Evictions.Load() > 0 })
	// demoted.bin goes first even though old.bin is older; that alone
	// brings the cache under its low watermark.
	if c.Stats.WastedPrefetchBytes.Load() != 2<<20+1 {
		t.Errorf("wasted = %d, want the demoted object's %d", c.Stats.WastedPrefetchBytes.Load(), 2<<20+1)
	}
}
