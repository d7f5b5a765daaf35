package jitfs_test

// Benchmarks of a mounted jitfs against an in-process GCS emulator. They need
// /dev/fuse and, for FUSE passthrough and page-cache dropping, root. See
// docs/BENCHMARKS.md for the command, the method and the last results.
//
// Sizes: JITFS_BENCH_SIZE is the size in bytes of the large object (default
// 1 GiB, 64 MiB with -short); JITFS_BENCH_FILES is the file count of the
// 100k-file benchmarks (default 100,000, 10,000 with -short).

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/jitfs"
)

const (
	benchBucket = "jitfs-bench"
	mib         = 1 << 20
	fuseMagic   = 0x65735546 // FUSE_SUPER_MAGIC
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// envInt reads a positive integer from the environment, else def.
func envInt(b *testing.B, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// bigSize is the size of the large object of the read benchmarks.
func bigSize(b *testing.B) int64 {
	def := int64(1 << 30)
	if testing.Short() {
		def = 64 * mib
	}
	v := envInt(b, "JITFS_BENCH_SIZE", def)
	if v < 1*mib {
		b.Fatalf("JITFS_BENCH_SIZE=%d: want at least 1 MiB", v)
	}
	return v
}

// manyFiles is the file count of the 100k-file benchmarks.
func manyFiles(b *testing.B) int {
	def := int64(100_000)
	if testing.Short() {
		def = 10_000
	}
	return int(envInt(b, "JITFS_BENCH_FILES", def))
}

// genData returns size deterministic pseudo-random bytes.
func genData(size int64, seed uint64) []byte {
	var key [32]byte
	for i := range key {
		key[i] = byte(seed >> (8 * (i % 8)))
	}
	p := make([]byte, size)
	_, _ = rand.NewChaCha8(key).Read(p)
	return p
}

func startEmulator(b *testing.B, opts emulator.Options) *emulator.Server {
	b.Helper()
	opts.Addr = "127.0.0.1:0"
	emu, err := emulator.Start(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emu.Stop)
	return emu
}

func newGCS(b *testing.B, emu *emulator.Server) *gcs.Client {
	b.Helper()
	gc, err := gcs.New(context.Background(), gcs.Options{Bucket: benchBucket, Endpoint: emu.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gc.Close() })
	return gc
}

func gcsRequests(gc *gcs.Client) int64 {
	return gc.Stats.Lists.Load() + gc.Stats.Stats.Load() + gc.Stats.Reads.Load()
}

// mount is one in-process jitfs mount with its own cache.
type mount struct {
	dir      string // mountpoint
	cacheDir string
	cache    *cache.Cache
	fs       *jitfs.FS
	srv      *fuse.Server
	once     sync.Once
}

func newMount(b *testing.B, gc *gcs.Client, cacheDir string, passthrough bool) *mount {
	b.Helper()
	c, err := cache.New(cache.Options{Dir: cacheDir, Budget: 4 << 30, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	f, err := jitfs.New(jitfs.Options{Remote: gc, Cache: c, Passthrough: passthrough,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Logger: quietLogger()})
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp(b.TempDir(), "mnt")
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	srv, err := f.Mount(dir, jitfs.MountOptions{FsName: "jitfs-bench"})
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	m := &mount{dir: dir, cacheDir: cacheDir, cache: c, fs: f, srv: srv}
	b.Cleanup(func() { m.close(b) })
	return m
}

// close unmounts (detaching if busy) and closes the cache; idempotent.
func (m *mount) close(b *testing.B) {
	m.once.Do(func() {
		if err := m.srv.Unmount(); err != nil {
			b.Logf("unmount %s: %v; detaching", m.dir, err)
			_ = syscall.Unmount(m.dir, syscall.MNT_DETACH)
		}
		if err := m.cache.Close(); err != nil {
			b.Errorf("cache close: %v", err)
		}
	})
}

// dropState records how page caches were dropped, for the logs.
var dropState struct {
	once     sync.Once
	procOK   bool
	reported atomic.Bool
}

// dropCaches empties the page cache before a cold read: through
// /proc/sys/vm/drop_caches when writable (root), else with
// POSIX_FADV_DONTNEED on each file given (which must not be a jitfs path:
// opening one counts as an open in the daemon; see dropOpen). level "1"
// drops the page cache, "3" dentries and inodes as well.
func dropCaches(b *testing.B, level string, paths ...string) {
	b.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte(level), 0); err == nil {
		dropState.procOK = true
	} else {
		dropState.procOK = false
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				b.Logf("fadvise %s: %v", p, err)
			}
			f.Close()
		}
	}
	if !dropState.reported.Swap(true) {
		if dropState.procOK {
			b.Logf("page cache dropped with /proc/sys/vm/drop_caches")
		} else {
			b.Logf("/proc/sys/vm/drop_caches not writable: page cache dropped with POSIX_FADV_DONTNEED per file")
		}
	}
}

// dropOpen drops an already open file's pages when drop_caches is not
// available (a no-op after a successful drop_caches).
func dropOpen(f *os.File) {
	if !dropState.procOK {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
}

// readFile reads f to its end with 1 MiB reads.
func readFile(f *os.File, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func crcFile(path string) (int64, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, f, make([]byte, mib))
	return n, h.Sum32(), err
}

// readOnce drops caches, opens path and reads all of it, returning how long
// the reads took. With timed, the framework's timer (stopped by the caller)
// runs during the reads only.
func readOnce(b *testing.B, path string, buf []byte, want int64, timed bool, dropPaths ...string) time.Duration {
	b.Helper()
	dropCaches(b, "1", dropPaths...)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	dropOpen(f)
	if timed {
		b.StartTimer()
	}
	t0 := time.Now()
	n, err := readFile(f, buf)
	d := time.Since(t0)
	if timed {
		b.StopTimer()
	}
	if err != nil || n != want {
		b.Fatalf("read %s: %d bytes, %v; want %d bytes", path, n, err, want)
	}
	return d
}

// BenchmarkWarmSequentialRead reads a fully cached large object through the
// mount with 1 MiB reads, each time after dropping the page cache, next to
// the same bytes in a plain file on the same disk.
//
//   - native: the plain file.
//   - jitfs: the mount with passthrough; each iteration also reads the plain
//     file (untimed by the framework) so that ratio-vs-native compares runs
//     made under the same conditions.
//   - jitfs-no-passthrough: the same cache remounted without passthrough,
//     so every read goes through the daemon.
func BenchmarkWarmSequentialRead(b *testing.B) {
	size := bigSize(b)
	work := b.TempDir()
	const name = "warm/big.bin"

	data := genData(size, 1)
	want := crc32.Checksum(data, castagnoli)
	native := filepath.Join(work, "native.bin")
	if err := writeSynced(native, data); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	emu := startEmulator(b, emulator.Options{Bucket: benchBucket, StorageRoot: filepath.Join(work, "gcs")})
	emu.Put(benchBucket, name, data)
	b.Logf("emulator (on-disk backend): put %d MiB in %v", size/mib, time.Since(t0).Round(time.Millisecond))
	data = nil
	runtime.GC()
	debug.FreeOSMemory()

	gc := newGCS(b, emu)
	cacheDir := filepath.Join(work, "cache")
	m := newMount(b, gc, cacheDir, true)
	file := filepath.Join(m.dir, name)

	// Fill the cache with one cold read, then wait for the object to be
	// verified complete: an open of a complete object is a passthrough open.
	t0 = time.Now()
	n, got, err := crcFile(file)
	if err != nil || n != size || got != want {
		b.Fatalf("cold read through the mount: %d bytes, crc %08x, %v; want %d bytes, crc %08x", n, got, err, size, want)
	}
	cold := time.Since(t0)
	b.Logf("cold read (fetch into cache): %.0f MB/s, %d GCS reads", float64(size)/cold.Seconds()/1e6, gc.Stats.Reads.Load())
	deadline := time.Now().Add(2 * time.Minute)
	for {
		before := m.fs.Stats.PassthroughOpens.Load()
		f, err := os.Open(file)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		if m.fs.Stats.PassthroughOpens.Load() > before {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("object not complete in the cache 2 minutes after a full read (no passthrough open)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, got, err := crcFile(file); err != nil || n != size || got != want {
		b.Fatalf("warm read through the mount: %d bytes, crc %08x, %v; want crc %08x", n, got, err, want)
	}
	backing, _ := filepath.Glob(filepath.Join(cacheDir, "objects", "*", "*.data"))
	if len(backing) != 1 {
		b.Fatalf("want one cached data file, found %q", backing)
	}
	drop := []string{native, backing[0]}
	buf := make([]byte, mib)

	b.Run("native", func(b *testing.B) {
		b.SetBytes(size)
		b.ResetTimer()
		b.StopTimer()
		for range b.N {
			readOnce(b, native, buf, size, true, drop...)
		}
	})

	b.Run("jitfs", func(b *testing.B) {
		b.SetBytes(size)
		op0, pt0 := m.fs.Stats.Opens.Load(), m.fs.Stats.PassthroughOpens.Load()
		rd0, g0 := m.fs.Stats.Reads.Load(), gc.Stats.Reads.Load()
		var tJ, tN time.Duration
		b.ResetTimer()
		b.StopTimer()
		for range b.N {
			tN += readOnce(b, native, buf, size, false, drop...)
			tJ += readOnce(b, file, buf, size, true, drop...)
		}
		opens := m.fs.Stats.Opens.Load() - op0
		b.ReportMetric(float64(size)*float64(b.N)/tN.Seconds()/1e6, "native-MB/s")
		b.ReportMetric(tN.Seconds()/tJ.Seconds(), "ratio-vs-native")
		b.ReportMetric(float64(m.fs.Stats.PassthroughOpens.Load()-pt0)/float64(opens), "passthrough-opens/open")
		b.ReportMetric(float64(m.fs.Stats.Reads.Load()-rd0)/float64(b.N), "daemon-reads/op")
		b.ReportMetric(float64(gc.Stats.Reads.Load()-g0), "gcs-reads")
	})

	// Remount the same cache without passthrough: every read goes through
	// the daemon, which reads the cache's data file.
	m.close(b)
	m2 := newMount(b, gc, cacheDir, false)
	file2 := filepath.Join(m2.dir, name)
	if _, err := os.Stat(file2); err != nil {
		b.Fatal(err)
	}
	b.Run("jitfs-no-passthrough", func(b *testing.B) {
		b.SetBytes(size)
		rd0, g0 := m2.fs.Stats.Reads.Load(), gc.Stats.Reads.Load()
		var tJ, tN time.Duration
		b.ResetTimer()
		b.StopTimer()
		for range b.N {
			tN += readOnce(b, native, buf, size, false, drop...)
			tJ += readOnce(b, file2, buf, size, true, drop...)
		}
		b.ReportMetric(float64(size)*float64(b.N)/tN.Seconds()/1e6, "native-MB/s")
		b.ReportMetric(tN.Seconds()/tJ.Seconds(), "ratio-vs-native")
		b.ReportMetric(float64(m2.fs.Stats.Reads.Load()-rd0)/float64(b.N), "daemon-reads/op")
		b.ReportMetric(float64(gc.Stats.Reads.Load()-g0), "gcs-reads")
	})
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
