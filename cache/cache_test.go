package cache_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/testworld"
)

const bucket = "cache-test"

// env is a cache's remote: the emulator behind a fault proxy, read through
// cloud.google.com/go/storage.
type env struct {
	*testworld.World
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{testworld.New(t, testworld.Options{Bucket: bucket})}
}

// put stores deterministic content and returns it with its live generation.
func (e *env) put(t *testing.T, name string, size int) ([]byte, cache.Meta) {
	t.Helper()
	b := e.PutRandom(name, size)
	return b, e.meta(t, name)
}

func (e *env) meta(t *testing.T, name string) cache.Meta {
	t.Helper()
	a := e.Stat(t, name)
	return cache.Meta{Bucket: bucket, Name: name, Gen: a.Generation, Size: a.Size, CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}
}

func newCache(t *testing.T, dir string, budget int64) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Options{Dir: dir, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConcurrentReadersShareOneFetch(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "tex/a.tx", 1<<20)
	c := newCache(t, t.TempDir(), 1<<30)
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := c.Open(m, e.GCS)
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Close()
			buf := make([]byte, 4096)
			if _, err := h.ReadAt(context.Background(), buf, 12345); err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(buf, content[12345:12345+4096]) {
				t.Error("wrong bytes")
			}
		}()
	}
	wg.Wait()
	if got := c.Stats.Fetches.Load(); got != 1 {
		t.Fatalf("32 concurrent readers made %d fetches, want 1", got)
	}
}

func TestCancelledReaderDoesNotCancelTheFetch(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "big.exr", 4<<20)
	c := newCache(t, t.TempDir(), 1<<30)
	e.Proxy.StallMedia.Store(int64(500 * time.Millisecond))
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	buf := make([]byte, 64<<10)
	if _, err := h.ReadAt(ctx, buf, 3<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled reader: %v", err)
	}
	e.Proxy.StallMedia.Store(0)
	if _, err := h.ReadAt(context.Background(), buf, 3<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, content[3<<20:3<<20+len(buf)]) {
		t.Fatal("wrong bytes")
	}
	if got := c.Stats.Fetches.Load(); got != 1 {
		t.Fatalf("the second reader should have joined the first fetch; %d fetches", got)
	}
}

func TestRandomReadsFetchOnlyTouchedBlocks(t *testing.T) {
	e := newEnv(t)
	const size = 64 << 20
	content, m := e.put(t, "huge.vdb", size)
	c := newCache(t, t.TempDir(), 1<<30)
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 4096)
	for i := 0; i < 100; i++ {
		off := r.Int64N(size - 4096)
		if _, err := h.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, content[off:off+4096]) {
			t.Fatalf("wrong bytes at %d", off)
		}
	}
	// At most two 64 KiB blocks per read.
	if got := c.Stats.FetchedBytes.Load(); got > 100*2*(64<<10) {
		t.Fatalf("100 random 4 KiB reads fetched %d bytes", got)
	}
}

// TestFullDiskServesFromMemory puts the cache on a 1 MiB tmpfs: reads of a
// larger object still succeed, and the condition is counted.
func TestFullDiskServesFromMemory(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "plate.exr", 6<<20)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs (the tests run as root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got := make([]byte, len(content))
	for off := 0; off < len(content); off += 128 << 10 {
		if _, err := h.ReadAt(context.Background(), got[off:min(off+128<<10, len(got))], int64(off)); err != nil {
			t.Fatalf("read at %d on a full disk: %v", off, err)
		}
	}
	if !bytes.Equal(got, content) {
		t.Fatal("wrong bytes from a full cache disk")
	}
	if c.Stats.DiskErrors.Load() == 0 {
		t.Fatal("disk errors were not counted")
	}
}

func TestSecondCacheOnOneDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	newCache(t, dir, 1<<20)
	_, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 20})
	if !errors.Is(err, cache.ErrInUse) {
		t.Fatalf("second cache: %v", err)
	}
}

func TestRestartIndexesWithoutReadingAndVerifiesOnUse(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "lib.blend", 3<<20)
	dir := t.TempDir()
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := c.Open(m, e.GCS)
	buf := make([]byte, 1<<20)
	h.ReadAt(context.Background(), buf, 1<<20)
	h.Close()
	c.Close()

	// Flip a cached byte behind the cache's back.
	datas, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*.data"))
	f, _ := os.OpenFile(datas[0], os.O_WRONLY, 0)
	f.WriteAt([]byte{^content[1<<20+10]}, 1<<20+10)
	f.Close()

	c2 := newCache(t, dir, 1<<30)
	if c2.Len() != 1 {
		t.Fatalf("restart indexed %d objects, want 1", c2.Len())
	}
	h2, err := c2.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.ReadAt(context.Background(), buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, content[1<<20:2<<20]) {
		t.Fatal("a corrupted cached range was served")
	}
	if c2.Stats.ChecksumMismatches.Load() == 0 {
		t.Fatal("mismatch not counted")
	}
}
