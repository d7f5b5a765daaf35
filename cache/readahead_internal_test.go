package cache

import (
	"bytes"
	"context"
	"testing"

	"github.com/jitfs/jitfs/internal/testworld"
)

// TestReadAheadResumesAfterSlotsFree: when other files hold every
// read-ahead slot, a sequential reader's read-ahead is not silently skipped
// for that stretch; its next read after a slot frees starts it.
func TestReadAheadResumesAfterSlotsFree(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	const size, readSize = 64 << 20, 128 << 10
	content := w.PutRandom("renders/shot.mov", size)
	a := w.Stat(t, "renders/shot.mov")
	c, err := New(Options{Dir: t.TempDir(), Budget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Open(Meta{Bucket: w.Bucket, Name: a.Name, Gen: a.Generation, Size: a.Size, CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}, w.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, readSize)
	read := func(off int64) {
		t.Helper()
		if _, err := h.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, content[off:off+readSize]) {
			t.Fatalf("wrong bytes at %d", off)
		}
	}

	// Other handles are reading ahead: every slot is taken while this
	// handle reads its first 12 MiB in sequence.
	const run = 12 << 20
	if !c.ra.TryAcquire(int64(c.opts.ReadAheadFetches)) {
		t.Fatal("read-ahead slots busy in a new cache")
	}
	for off := int64(0); off < run; off += readSize {
		read(off)
	}
	c.ra.Release(int64(c.opts.ReadAheadFetches))
	read(run)

	// A 12 MiB run reads 12 MiB ahead (the window grows with the run up to
	// ReadAheadParts parts), so everything up to 24 MiB must now be cached
	// or being fetched. This is deterministic: ReadAt registers its fills
	// before it returns.
	o, bs := h.o, c.opts.BlockSize
	o.mu.Lock()
	defer o.mu.Unlock()
	for b := int64(run+readSize) / bs; b < 2*run/bs; b++ {
		if !o.has(b) && o.inflight[b] == nil {
			t.Fatalf("after read-ahead slots freed, the next read of a %d MiB run left [%d, %d) unfetched",
				run>>20, b*bs, 2*run)
		}
	}
}
