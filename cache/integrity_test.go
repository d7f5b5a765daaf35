package cache_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/testworld"
)

func newLoggedCache(t *testing.T, opts cache.Options) (*cache.Cache, *testworld.Buffer) {
	t.Helper()
	lb := &testworld.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(lb, nil))
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Budget == 0 {
		opts.Budget = 1 << 30
	}
	c, err := cache.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, lb
}

// waitUntil polls cond until it holds; the bound is only a backstop for a
// broken build, not a timing assertion.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLateMismatchNamesReadersAndFailsTheirReads: one flipped byte in one
// ranged response of a large object. In the default mode the byte reaches a
// reader before the object can be checked whole; once it is assembled the
// mismatch is logged with that reader, counted, the object is refetched for
// new readers, and the reader's own handle fails its next read.
func TestLateMismatchNamesReadersAndFailsTheirReads(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "cache/smoke.vdb", 6<<20)
	c, lb := newLoggedCache(t, cache.Options{})
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.SetReader(4242, "pid 4242 (blender)")
	e.Proxy.CorruptMedia.Store(1)
	// Read as the kernel would until the end or the first error: the
	// mismatch can be found while the reader is still reading (read-ahead
	// assembles the object ahead of it).
	got := make([]byte, len(content))
	n := 0
	var readErr error
	for n < len(got) {
		k, err := h.ReadAt(context.Background(), got[n:min(n+128<<10, len(got))], int64(n))
		if err != nil {
			readErr = err
			break
		}
		n += k
	}
	if bytes.Equal(got[:n], content[:n]) {
		t.Fatal("the corrupt response did not reach the reader; the test checks nothing")
	}
	waitUntil(t, "the late mismatch", func() bool { return c.Stats.LateMismatches.Load() == 1 })
	log := lb.String()
	if !strings.Contains(log, "pid 4242 (blender)") || !strings.Contains(log, "cache/smoke.vdb") {
		t.Fatalf("the late mismatch does not name the object and its reader:\n%s", log)
	}
	if readErr == nil {
		_, readErr = h.ReadAt(context.Background(), make([]byte, 4096), 0)
	}
	if !errors.Is(readErr, cache.ErrChecksum) {
		t.Fatalf("the handle that read corrupt bytes read on: %v, want ErrChecksum", readErr)
	}
	h2, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if !bytes.Equal(readWhole(t, h2, len(content)), content) {
		t.Fatal("a new reader after the mismatch got wrong bytes")
	}
	waitUntil(t, "the refetched object to be verified", verified(h2))
}

// verified reports whether h's object is complete and verified, through
// BackingFile, which succeeds only then: the state that lets the FUSE
// layer hand the file to the kernel.
func verified(h *cache.Handle) func() bool {
	return func() bool {
		f, ok := h.BackingFile()
		if ok {
			f.Close()
		}
		return ok
	}
}

// TestStrictServesOnlyVerifiedObjects: with Options.Strict the same flipped
// byte never reaches a reader: the read waits for the whole object, which
// fails its check, is fetched again and served once it passes.
func TestStrictServesOnlyVerifiedObjects(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "cache/smoke.vdb", 6<<20)
	c, _ := newLoggedCache(t, cache.Options{Strict: true})
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e.Proxy.CorruptMedia.Store(1)
	if !bytes.Equal(readWhole(t, h, len(content)), content) {
		t.Fatal("strict mode served a corrupt byte")
	}
	if e.Proxy.CorruptMedia.Load() != 0 {
		t.Fatal("no response was corrupted; the test checks nothing")
	}
	if c.Stats.ChecksumMismatches.Load() == 0 || c.Stats.LateMismatches.Load() != 0 {
		t.Fatalf("mismatches %d, late %d: want one found before serving", c.Stats.ChecksumMismatches.Load(), c.Stats.LateMismatches.Load())
	}

	// An object that never passes fails its reads.
	_, m2 := e.put(t, "cache/bad.vdb", 5<<20)
	e.Proxy.CorruptMedia.Store(1 << 30)
	defer e.Proxy.CorruptMedia.Store(0)
	h2, err := c.Open(m2, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.ReadAt(context.Background(), make([]byte, 4096), 1<<20); !errors.Is(err, cache.ErrChecksum) {
		t.Fatalf("strict read of an object that never verifies: %v, want ErrChecksum", err)
	}
}

// TestStrictOnFullDiskFailsRatherThanServeUnchecked: strict mode cannot
// check an object the disk cannot hold whole; it says so instead of
// serving it unchecked.
func TestStrictOnFullDiskFailsRatherThanServeUnchecked(t *testing.T) {
	e := newEnv(t)
	_, m := e.put(t, "plate.exr", 6<<20)
	c, _ := newLoggedCache(t, cache.Options{Dir: mountTmpfs(t, "1m"), Strict: true})
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.ReadAt(context.Background(), make([]byte, 4096), 0); !errors.Is(err, cache.ErrNotStored) {
		t.Fatalf("strict read on a full disk: %v, want ErrNotStored", err)
	}
	// Small objects are checked whole before serving in every mode, so a
	// full disk still serves them.
	small, ms := e.put(t, "lut.cube", 300_000)
	hs, err := c.Open(ms, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	if !bytes.Equal(readWhole(t, hs, len(small)), small) {
		t.Fatal("wrong bytes for a small object on a full disk in strict mode")
	}
}

// TestFetchedChecksumMismatchIsRefetched: a small object is fetched whole
// and checked before any byte is served, in every mode: a flipped byte in
// its response is refetched, never served.
func TestFetchedChecksumMismatchIsRefetched(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "luts/show.cube", 700_000)
	c, _ := newLoggedCache(t, cache.Options{})
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e.Proxy.CorruptMedia.Store(1)
	if !bytes.Equal(readWhole(t, h, len(content)), content) {
		t.Fatal("a corrupt byte of a small object was served")
	}
	if e.Proxy.CorruptMedia.Load() != 0 {
		t.Fatal("no response was corrupted; the test checks nothing")
	}
	if c.Stats.LateMismatches.Load() != 0 {
		t.Fatal("a small object's mismatch was found after serving")
	}
}

// TestFlippedByteRefetchesOnlyItsRange: a complete cached object with one
// byte flipped on disk fails its whole-object check after a restart; only
// the journalled range holding the byte is fetched again, and a further
// restart serves everything with no fetch (the refetched range supersedes
// the damaged one in the journal).
func TestFlippedByteRefetchesOnlyItsRange(t *testing.T) {
	e := newEnv(t)
	const size = 24 << 20
	content, m := e.put(t, "cache/big.vdb", size)
	dir := t.TempDir()
	c, _ := newLoggedCache(t, cache.Options{Dir: dir})
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	readWhole(t, h, size)
	waitUntil(t, "the object to be verified whole", verified(h))
	h.Close()
	c.Close()

	datas, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*.data"))
	if len(datas) != 1 {
		t.Fatalf("%d data files", len(datas))
	}
	f, err := os.OpenFile(datas[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const at = 13<<20 + 12345
	f.WriteAt([]byte{^content[at]}, at)
	f.Close()

	c2, lb := newLoggedCache(t, cache.Options{Dir: dir})
	h2, err := c2.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readWhole(t, h2, size), content) {
		t.Fatal("a flipped cached byte was served")
	}
	fetched := c2.Stats.FetchedBytes.Load()
	if fetched == 0 || fetched > 8<<20 {
		t.Fatalf("refetched %d bytes of a %d-byte object for one flipped byte; want only its range (at most one 8 MiB part)\n%s", fetched, size, lb)
	}
	waitUntil(t, "the repaired object to be verified whole", verified(h2))
	h2.Close()
	c2.Close()

	c3, _ := newLoggedCache(t, cache.Options{Dir: dir})
	h3, err := c3.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	if !bytes.Equal(readWhole(t, h3, size), content) {
		t.Fatal("wrong bytes after the second restart")
	}
	if n := c3.Stats.Fetches.Load(); n != 0 {
		t.Fatalf("the second restart fetched %d times; the repaired range should have superseded the damaged one", n)
	}
}
