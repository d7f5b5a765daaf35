package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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

// mountTmpfs mounts a tmpfs of the given size (the tests run as root) as a
// small cache disk.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs (the tests run as root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// readWhole reads a handle in 128 KiB reads, as the kernel sends them.
func readWhole(t *testing.T, h *cache.Handle, size int) []byte {
	t.Helper()
	got := make([]byte, size)
	for off := 0; off < size; off += 128 << 10 {
		if _, err := h.ReadAt(context.Background(), got[off:min(off+128<<10, size)], int64(off)); err != nil {
			t.Fatalf("read at %d on a full disk: %v", off, err)
		}
	}
	return got
}

// TestFullDiskServesFromMemory puts the cache on a 1 MiB tmpfs: reads of a
// larger object still succeed, each byte is fetched once (what the disk
// refused is served from memory, not fetched again per read), and the
// condition is counted.
func TestFullDiskServesFromMemory(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "plate.exr", 6<<20)
	dir := mountTmpfs(t, "1m")
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
	if !bytes.Equal(readWhole(t, h, len(content)), content) {
		t.Fatal("wrong bytes from a full cache disk")
	}
	if c.Stats.DiskErrors.Load() == 0 {
		t.Fatal("disk errors were not counted")
	}
	if got := c.Stats.FetchedBytes.Load(); got != int64(len(content)) {
		t.Fatalf("reading a %d-byte object onto a full disk fetched %d bytes; each byte should be fetched once", len(content), got)
	}
	// Read again: from disk and memory, no fetch.
	before := c.Stats.Fetches.Load()
	if !bytes.Equal(readWhole(t, h, len(content)), content) {
		t.Fatal("wrong bytes on the second read")
	}
	if n := c.Stats.Fetches.Load() - before; n != 0 {
		t.Fatalf("second read of an object held in memory made %d fetches", n)
	}
	if c.Stats.MemoryHitBytes.Load() == 0 || c.Stats.MemoryBytes.Load() == 0 {
		t.Fatalf("memory not reported: held %d, served %d", c.Stats.MemoryBytes.Load(), c.Stats.MemoryHitBytes.Load())
	}
}

// TestFullDiskOpensSucceed fills the cache disk to the last byte before
// any object is opened: creating an object's journal fails with ENOSPC, yet
// every open and read succeeds from memory, small objects and large.
func TestFullDiskOpensSucceed(t *testing.T) {
	e := newEnv(t)
	dir := mountTmpfs(t, "1m")
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Fill what is left of the disk (another tenant of the cache disk,
	// or the budget set larger than the disk).
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()
	if err := os.WriteFile(filepath.Join(dir, "probe"), []byte("x"), 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the disk is not full: %v", err)
	}

	var total int64
	for i := 0; i < 20; i++ {
		size := 3000 + i*40_000
		if i%5 == 4 {
			size = 3<<20 + i
		}
		content, m := e.put(t, fmt.Sprintf("tex/t%02d.tx", i), size)
		total += int64(size)
		h, err := c.Open(m, e.GCS)
		if err != nil {
			t.Fatalf("open on a full cache disk: %v", err)
		}
		if !bytes.Equal(readWhole(t, h, size), content) {
			t.Fatalf("wrong bytes for %s", m.Name)
		}
		h.Close()
	}
	if c.Stats.DiskErrors.Load() == 0 {
		t.Fatal("disk errors were not counted")
	}
	if got := c.Stats.FetchedBytes.Load(); got != total {
		t.Fatalf("fetched %d bytes for %d bytes of objects", got, total)
	}
	// Once the disk has room again, new objects are stored as before.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	content, m := e.put(t, "tex/after.tx", 100_000)
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !bytes.Equal(readWhole(t, h, len(content)), content) {
		t.Fatal("wrong bytes after the disk had room again")
	}
	// A reader gets its bytes before the fill is written to disk; Fetch
	// waits for fills still being stored (and fetches nothing here, as the
	// blocks are present, in flight or held in memory).
	if _, err := h.Fetch(context.Background(), 0, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if !h.Resident(0, int64(len(content))) {
		t.Fatal("an object read after the disk had room again is not on disk")
	}
}

// TestMemoryHoldIsBounded: with a 1 MiB memory budget and no disk space,
// what is held stays within the budget; bytes pushed out are fetched again.
func TestMemoryHoldIsBounded(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "plate.exr", 6<<20)
	dir := mountTmpfs(t, "256k")
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30, MemoryBytes: 1 << 20, PartSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for pass := 0; pass < 2; pass++ {
		if !bytes.Equal(readWhole(t, h, len(content)), content) {
			t.Fatalf("pass %d: wrong bytes", pass)
		}
		if held := c.Stats.MemoryBytes.Load(); held > 1<<20 {
			t.Fatalf("pass %d: %d bytes held in memory, budget 1 MiB", pass, held)
		}
	}
	if got := c.Stats.FetchedBytes.Load(); got <= int64(len(content)) {
		t.Fatalf("fetched %d bytes over two passes; with 1 MiB of memory most of the second pass must be fetched again", got)
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

// openCacheFiles counts this process's file descriptors on files under the
// cache's object directory (the directory lock is not counted).
func openCacheFiles(t *testing.T, dir string) int {
	t.Helper()
	objects, err := filepath.EvalSymlinks(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, objects+"/") {
			n++
		}
	}
	return n
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// eventually waits for cond, which background fills make true once they
// have written what they fetched. The deadline only bounds a hung test; no
// assertion depends on how fast the condition becomes true.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	const limit = 30 * time.Second
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %v: %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gatedSource holds every ReadRange until open is closed, so a test can
// close a handle while its fill is certainly in flight.
type gatedSource struct {
	cache.Source
	started chan struct{} // receives once per ReadRange that reached the gate
	open    chan struct{}
}

func (g *gatedSource) ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error {
	g.started <- struct{}{}
	<-g.open
	return g.Source.ReadRange(ctx, name, gen, off, p)
}

// TestClosedObjectsHoldNoFiles reads many objects and closes them: the
// daemon's open files must not grow with the number of distinct files read
// (a render touches tens of thousands), and a closed object's bytes must
// still be served from the cache.
func TestClosedObjectsHoldNoFiles(t *testing.T) {
	for _, keep := range []int{0, 16} {
		t.Run(fmt.Sprintf("KeepOpen=%d", keep), func(t *testing.T) { testClosedObjectsHoldFiles(t, keep) })
	}
}

// testClosedObjectsHoldFiles: with KeepOpen, at most that many closed
// objects (two files each) stay open, the most recently closed.
func testClosedObjectsHoldFiles(t *testing.T, keep int) {
	e := newEnv(t)
	dir := t.TempDir()
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30, KeepOpen: keep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	const objects = 200
	type obj struct {
		content []byte
		m       cache.Meta
		readTo  int // bytes [0, readTo) were read
	}
	objs := make([]obj, objects)
	for i := range objs {
		// Every tenth object is larger than WholeObjectMax and read in part,
		// sequentially, so read-ahead fills are often still running when its
		// handle closes.
		size, readTo := 100<<10+i, 100<<10+i
		if i%10 == 0 {
			size, readTo = 4<<20, 1<<20
		}
		content, m := e.put(t, fmt.Sprintf("shot/f%04d.exr", i), size)
		objs[i] = obj{content, m, readTo}
	}
	read := func(o obj) {
		t.Helper()
		h, err := c.Open(o.m, e.GCS)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		got := make([]byte, o.readTo)
		for off := 0; off < o.readTo; off += 128 << 10 {
			if _, err := h.ReadAt(ctx, got[off:min(off+128<<10, o.readTo)], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, o.content[:o.readTo]) {
			t.Fatalf("%s: wrong bytes", o.m)
		}
	}

	fds0 := openFDs(t)
	for _, o := range objs {
		read(o)
	}
	eventually(t, "no more than the kept cache files open once every handle is closed and every fill written", func() bool {
		return openCacheFiles(t, dir) <= 2*keep
	})
	// The storage client's and the proxy's connections come and go; the
	// cache's two files per object would add 2*objects.
	if grew := openFDs(t) - fds0; grew > objects/4 {
		t.Fatalf("open file descriptors grew by %d after reading %d objects", grew, objects)
	}

	media, fetches := e.Proxy.MediaReqs.Load(), c.Stats.Fetches.Load()
	for _, o := range objs {
		read(o)
	}
	if dm, df := e.Proxy.MediaReqs.Load()-media, c.Stats.Fetches.Load()-fetches; dm != 0 || df != 0 {
		t.Fatalf("re-reading closed objects made %d media requests (%d fetches); want 0: served from cache", dm, df)
	}
	if n := openCacheFiles(t, dir); n > 2*keep {
		t.Fatalf("%d cache files open after re-reading, %d kept open at most", n, 2*keep)
	}
}

// TestLastFillClosesFiles closes an object's only handle while its fill is
// in flight: the files stay open for the fill to write to, and close when
// it is done.
func TestLastFillClosesFiles(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "late.vdb", 4<<20)
	dir := t.TempDir()
	c := newCache(t, dir, 1<<30)
	src := &gatedSource{Source: e.GCS, started: make(chan struct{}, 16), open: make(chan struct{})}
	h, err := c.Open(m, src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	buf := make([]byte, 64<<10)
	if _, err := h.ReadAt(ctx, buf, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with a cancelled context while the fill is held: %v", err)
	}
	<-src.started
	h.Close()
	if n := openCacheFiles(t, dir); n != 2 {
		t.Fatalf("%d cache files open while a fill is in flight; want 2 (data, journal)", n)
	}
	close(src.open)
	eventually(t, "files closed after the last fill", func() bool { return openCacheFiles(t, dir) == 0 })

	media := e.Proxy.MediaReqs.Load()
	h, err = c.Open(m, src)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	n, info, err := h.ReadAtInfo(context.Background(), buf, 1<<20)
	if err != nil || n != len(buf) {
		t.Fatalf("re-read: %d, %v", n, err)
	}
	if !bytes.Equal(buf, content[1<<20:1<<20+len(buf)]) {
		t.Fatal("wrong bytes")
	}
	if info.Outcome != cache.Hit || e.Proxy.MediaReqs.Load() != media {
		t.Fatalf("re-read after the files closed: %v with %d new media requests; want a hit with none",
			info.Outcome, e.Proxy.MediaReqs.Load()-media)
	}
}

// TestClosedObjectRefetchesIfItsFilesDisappear: an idle object's files are
// closed, so removing them (an operator clearing the cache directory) is
// seen at the next open; the object is fetched again, not served as holes.
func TestClosedObjectRefetchesIfItsFilesDisappear(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "gone.abc", 3<<20)
	dir := t.TempDir()
	c := newCache(t, dir, 1<<30)
	read := func() cache.ReadInfo {
		t.Helper()
		h, err := c.Open(m, e.GCS)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		buf := make([]byte, 256<<10)
		_, info, err := h.ReadAtInfo(context.Background(), buf, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, content[1<<20:1<<20+len(buf)]) {
			t.Fatal("wrong bytes")
		}
		return info
	}
	read()
	eventually(t, "files closed", func() bool { return openCacheFiles(t, dir) == 0 })
	if info := read(); info.Outcome != cache.Hit {
		t.Fatalf("second read: %v, want a hit", info.Outcome)
	}
	eventually(t, "files closed", func() bool { return openCacheFiles(t, dir) == 0 })
	for _, pattern := range []string{"*.data", "*.jnl"} {
		files, _ := filepath.Glob(filepath.Join(dir, "objects", "*", pattern))
		if len(files) != 1 {
			t.Fatalf("%s: %d files, want 1", pattern, len(files))
		}
		media := e.Proxy.MediaReqs.Load()
		if err := os.Remove(files[0]); err != nil {
			t.Fatal(err)
		}
		if info := read(); info.Outcome != cache.Miss || e.Proxy.MediaReqs.Load() == media {
			t.Fatalf("read after removing %s: %v, %d new media requests; want a miss that fetches",
				filepath.Base(files[0]), info.Outcome, e.Proxy.MediaReqs.Load()-media)
		}
		eventually(t, "files closed", func() bool { return openCacheFiles(t, dir) == 0 })
	}
}

// recordingSource records the range of every ReadRange the cache makes.
type recordingSource struct {
	cache.Source
	mu     sync.Mutex
	ranges [][2]int64 // [off, end)
}

func (r *recordingSource) ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error {
	r.mu.Lock()
	r.ranges = append(r.ranges, [2]int64{off, off + int64(len(p))})
	r.mu.Unlock()
	return r.Source.ReadRange(ctx, name, gen, off, p)
}

// covering returns the recorded ranges that contain off.
func (r *recordingSource) covering(off int64) [][2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][2]int64
	for _, rg := range r.ranges {
		if rg[0] <= off && off < rg[1] {
			out = append(out, rg)
		}
	}
	return out
}

// TestReorderedSequentialReadsFetchLargeParts reads a cold object the way
// the kernel does through FUSE: 128 KiB reads on one handle from several
// threads, each read landing up to 1 MiB away from strict order. The
// reader is still sequential: its fetches must grow to whole parts rather
// than stay at the size of a few reads.
func TestReorderedSequentialReadsFetchLargeParts(t *testing.T) {
	e := newEnv(t)
	const size, readSize, shuffle, threads = 128 << 20, 128 << 10, 8, 4
	const partSize = 8 << 20 // the default PartSize
	content, m := e.put(t, "plates/beauty.0001.exr", size)
	c := newCache(t, t.TempDir(), 1<<30)
	src := &recordingSource{Source: e.GCS}
	h, err := c.Open(m, src)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	offs := make([]int64, 0, size/readSize)
	for off := int64(0); off < size; off += readSize {
		offs = append(offs, off)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(offs); i += shuffle {
		g := offs[i:min(i+shuffle, len(offs))]
		r.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
	}
	work := make(chan int64)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readSize)
			for off := range work {
				if _, err := h.ReadAt(context.Background(), buf, off); err != nil {
					t.Error(err)
					continue
				}
				if !bytes.Equal(buf, content[off:off+readSize]) {
					t.Errorf("wrong bytes at %d", off)
				}
			}
		}()
	}
	for _, off := range offs {
		work <- off
	}
	close(work)
	wg.Wait()

	// Every read has returned, so every fetch has been issued and counted.
	reqs, fetched := e.Proxy.MediaReqs.Load(), c.Stats.FetchedBytes.Load()
	if fetched != size {
		t.Errorf("fetched %d bytes for a %d-byte object", fetched, size)
	}
	// Fetches start at one block and grow with the run (so reading a
	// file's header does not pull megabytes); once grown, each is a part.
	if limit := int64(size/partSize*2 + 4); reqs > limit {
		t.Errorf("%d media requests (mean %d KiB) for %d MiB read in shuffled order; want at most %d",
			reqs, fetched/max(reqs, 1)>>10, size>>20, limit)
	}
	if mean := fetched / max(reqs, 1); mean < partSize/4 {
		t.Errorf("mean media request %d KiB; want at least %d KiB", mean>>10, partSize/4>>10)
	}
	src.mu.Lock()
	parts := 0
	for _, rg := range src.ranges {
		if rg[1]-rg[0] == partSize {
			parts++
		}
	}
	src.mu.Unlock()
	t.Logf("%d media requests, mean %d KiB, %d whole parts", reqs, fetched/max(reqs, 1)>>10, parts)
	if parts < size/partSize/2 {
		t.Errorf("%d of %d requests were whole %d MiB parts; want at least %d", parts, reqs, partSize>>20, size/partSize/2)
	}
}

// TestFarJumpEndsTheSequentialRun: after a sequential run, a read far away
// is a random read again and fetches only the block it touches.
func TestFarJumpEndsTheSequentialRun(t *testing.T) {
	e := newEnv(t)
	const size = 64 << 20
	content, m := e.put(t, "caches/sim.vdb", size)
	c := newCache(t, t.TempDir(), 1<<30)
	src := &recordingSource{Source: e.GCS}
	h, err := c.Open(m, src)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, 128<<10)
	for off := int64(0); off < 4<<20; off += int64(len(buf)) {
		if _, err := h.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
	}
	const block = 64 << 10 // the default BlockSize
	small := buf[:4096]
	for _, off := range []int64{40<<20 + 5000, 20<<20 + 70000, 60 << 20, 30<<20 + 1} {
		if _, err := h.ReadAt(context.Background(), small, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(small, content[off:off+int64(len(small))]) {
			t.Fatalf("wrong bytes at %d", off)
		}
		got := src.covering(off)
		if len(got) != 1 || got[0][1]-got[0][0] != block {
			t.Fatalf("a 4 KiB read at %d far from the sequential run was fetched as %v; want one %d KiB block",
				off, got, block>>10)
		}
	}
}

// TestStragglerDoesNotEndTheRun: a read from well inside a long sequential
// run that arrives late (its thread was descheduled) must not make the
// reader look random, or every straggler would restart fetches at one block.
func TestStragglerDoesNotEndTheRun(t *testing.T) {
	e := newEnv(t)
	const size, readSize = 64 << 20, 128 << 10
	const partSize = 8 << 20 // the default PartSize
	content, m := e.put(t, "caches/fluid.abc", size)
	c := newCache(t, t.TempDir(), 1<<30)
	src := &recordingSource{Source: e.GCS}
	h, err := c.Open(m, src)
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
	for off := int64(0); off < size; off += readSize {
		if off >= 16<<20 && off%(4<<20) == 0 {
			read(off - 12<<20) // 12 MiB behind: further than ReorderWindow
		}
		read(off)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	var late []int64
	for _, rg := range src.ranges {
		if rg[0] >= 24<<20 && rg[1]-rg[0] != partSize {
			late = append(late, rg[1]-rg[0])
		}
	}
	if len(late) > 0 {
		t.Fatalf("past 24 MiB, with stragglers, %d requests were not whole parts (sizes %v); %d requests in all",
			len(late), late, len(src.ranges))
	}
}

// TestAssembledObjectCheckedWithoutReadingBack: an object fetched in
// ranges (read in pieces out of order) is checked against its CRC32C from
// the ranges' checksums as they arrived, reads nothing back from the
// disk, and is then handed out for passthrough; a byte corrupted on the
// link is still caught by that check.
func TestAssembledObjectCheckedWithoutReadingBack(t *testing.T) {
	e := newEnv(t)
	content, m := e.put(t, "big/plate.exr", 12<<20+12345)
	c := newCache(t, t.TempDir(), 1<<30)
	ctx := context.Background()
	h, err := c.Open(m, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(content))
	for _, off := range []int{8 << 20, 0, 4 << 20} {
		end := min(off+4<<20, len(content))
		if off == 8<<20 {
			end = len(content)
		}
		if _, err := h.ReadAt(ctx, got[off:end], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, content) {
		t.Fatal("wrong bytes")
	}
	eventually(t, "the object verified and handed out for passthrough", func() bool {
		f, ok := h.BackingFile()
		return ok && f != nil
	})
	h.Close()
	if n := c.Stats.ReadBackChecks.Load(); n != 0 {
		t.Fatalf("%d whole-object checks read the object back", n)
	}

	// A byte flipped on the link in one of the ranges: the combined
	// checksum fails, and the object is never handed out as complete.
	content2, m2 := e.put(t, "big/matte.exr", 12<<20)
	e.Proxy.CorruptMedia.Store(1)
	h2, err := c.Open(m2, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	for off := 0; off < len(content2); off += 4 << 20 {
		h2.ReadAt(ctx, got[:4<<20], int64(off)) // served unchecked (streaming mode)
	}
	eventually(t, "the mismatch counted", func() bool { return c.Stats.ChecksumMismatches.Load() > 0 })
	if _, ok := h2.BackingFile(); ok {
		t.Fatal("an object that failed its CRC32C was handed out for passthrough")
	}
	if n := c.Stats.ReadBackChecks.Load(); n != 0 {
		t.Fatalf("%d whole-object checks read the object back", n)
	}
}
