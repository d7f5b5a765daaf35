package jitfs_test

// Benchmarks of a mounted jitfs against an in-process GCS emulator. They need
// /dev/fuse and, for FUSE passthrough and page-cache dropping, root. See
// docs/BENCHMARKS.md for the command, the method and the last results.
//
// Sizes: JITFS_BENCH_SIZE is the size in bytes of the large object (default
// 1 GiB, 64 MiB with -short); JITFS_BENCH_FILES is the file count of the
// 100k-file benchmarks (default 100,000; 10,000 with -short or when
// JITFS_BENCH_SIZE is below 1 GiB, so that a reduced run is quick).

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
	"os/signal"
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

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/telemetry"
)

const (
	benchBucket = "jitfs-bench"
	mib         = 1 << 20
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

// reducedRun reports a JITFS_BENCH_SIZE below 1 GiB, which also selects the
// smaller default file count (for quick CI runs).
func reducedRun() bool {
	v, err := strconv.ParseInt(os.Getenv("JITFS_BENCH_SIZE"), 10, 64)
	return err == nil && v > 0 && v < 1<<30
}

// manyFiles is the file count of the 100k-file benchmarks.
func manyFiles(b *testing.B) int {
	def := int64(100_000)
	if testing.Short() || reducedRun() {
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

// mount is one in-process jitfs mount (internal/daemon) with its own
// cache, reading through the benchmark's client, without a hook API.
type mount struct {
	*daemon.Scene
	dir      string // mountpoint
	cacheDir string
}

func newMount(b *testing.B, gc *gcs.Client, cacheDir string, passthrough bool) *mount {
	b.Helper()
	return newMountWith(b, gc, cacheDir, passthrough, nil)
}

// newMountWith mounts with tel recording every operation (nil: none).
func newMountWith(b *testing.B, gc *gcs.Client, cacheDir string, passthrough bool, tel *telemetry.Telemetry) *mount {
	b.Helper()
	dir, err := os.MkdirTemp(b.TempDir(), "mnt")
	if err != nil {
		b.Fatal(err)
	}
	s, err := daemon.StartScene(context.Background(), daemon.SceneConfig{Bucket: benchBucket, Mountpoint: dir, GCS: gc,
		CacheDir: cacheDir, CacheSize: 4 << 30, Passthrough: passthrough, Socket: "none", Log: quietLogger(), Telemetry: tel})
	if err != nil {
		b.Fatal(err)
	}
	m := &mount{Scene: s, dir: s.Config.Mountpoint, cacheDir: cacheDir}
	b.Cleanup(func() { m.close(b) })
	return m
}

// close unmounts (detaching if busy) and closes the cache; idempotent.
func (m *mount) close(b *testing.B) {
	if err := m.Close(); err != nil {
		b.Errorf("close %s: %v", m.dir, err)
	}
}

// dropState records how page caches were dropped, for the logs.
var dropState struct {
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
//     file (untimed by the framework, alternating which goes first) so that
//     ratio-vs-native and best-ratio-vs-native compare reads made under the
//     same conditions. daemon-reads/op is 0 when the kernel reads the cache
//     file itself (passthrough in effect).
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
	if _, err := os.Stat(file); err != nil {
		b.Fatal(err)
	}
	coldReads0, coldBytes0 := gc.Stats.Reads.Load(), gc.Stats.BytesRead.Load()
	n, got, err := crcFile(file)
	if err != nil || n != size || got != want {
		b.Fatalf("cold read through the mount: %d bytes, crc %08x, %v; want %d bytes, crc %08x", n, got, err, size, want)
	}
	cold := time.Since(t0)
	coldReads, coldBytes := gc.Stats.Reads.Load()-coldReads0, gc.Stats.BytesRead.Load()-coldBytes0
	coldRA := m.Cache.Stats.ReadAheadBytes.Load()
	// How long after the cold read's last byte an open is a passthrough
	// open (the first open waits for the last writes and the check).
	ptStart := time.Now()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		before := m.FS.Stats.PassthroughOpens.Load()
		f, err := os.Open(file)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		if m.FS.Stats.PassthroughOpens.Load() > before {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("object not complete in the cache 2 minutes after a full read (no passthrough open)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitPT := time.Since(ptStart)
	if n, got, err := crcFile(file); err != nil || n != size || got != want {
		b.Fatalf("warm read through the mount: %d bytes, crc %08x, %v; want crc %08x", n, got, err, want)
	}
	backing, _ := filepath.Glob(filepath.Join(cacheDir, "objects", "*", "*.data"))
	if len(backing) != 1 {
		b.Fatalf("want one cached data file, found %q", backing)
	}
	drop := []string{native, backing[0]}
	buf := make([]byte, mib)
	// One untimed read of the plain file, as the mount's was read above.
	readOnce(b, native, buf, size, false, drop...)

	b.Run("native", func(b *testing.B) {
		b.SetBytes(size)
		b.ResetTimer()
		b.StopTimer()
		for range b.N {
			readOnce(b, native, buf, size, true, drop...)
		}
	})

	// pairs reads the plain file and path alternately (in alternating
	// order), timing only path with the framework's timer, and reports the
	// plain file's throughput and the ratio of the two: from total times
	// (ratio-vs-native) and from each side's fastest read
	// (best-ratio-vs-native), which is less sensitive to the disk's noise.
	pairs := func(b *testing.B, path string) {
		var tJ, tN time.Duration
		bestJ, bestN := time.Duration(1<<62), time.Duration(1<<62)
		b.ResetTimer()
		b.StopTimer()
		for i := range b.N {
			var dJ, dN time.Duration
			if i%2 == 0 {
				dN = readOnce(b, native, buf, size, false, drop...)
				dJ = readOnce(b, path, buf, size, true, drop...)
			} else {
				dJ = readOnce(b, path, buf, size, true, drop...)
				dN = readOnce(b, native, buf, size, false, drop...)
			}
			tJ, tN = tJ+dJ, tN+dN
			bestJ, bestN = min(bestJ, dJ), min(bestN, dN)
		}
		b.ReportMetric(float64(size)*float64(b.N)/tN.Seconds()/1e6, "native-MB/s")
		b.ReportMetric(tN.Seconds()/tJ.Seconds(), "ratio-vs-native")
		b.ReportMetric(bestN.Seconds()/bestJ.Seconds(), "best-ratio-vs-native")
	}

	b.Run("jitfs", func(b *testing.B) {
		b.SetBytes(size)
		op0, pt0 := m.FS.Stats.Opens.Load(), m.FS.Stats.PassthroughOpens.Load()
		rd0, g0 := m.FS.Stats.Reads.Load(), gc.Stats.Reads.Load()
		pairs(b, file)
		opens := m.FS.Stats.Opens.Load() - op0
		b.ReportMetric(float64(m.FS.Stats.PassthroughOpens.Load()-pt0)/float64(opens), "passthrough-opens/open")
		b.ReportMetric(float64(m.FS.Stats.Reads.Load()-rd0)/float64(b.N), "daemon-reads/op")
		b.ReportMetric(float64(gc.Stats.Reads.Load()-g0), "gcs-reads")
		// The read that filled the cache (once, before the sub-benchmarks).
		b.ReportMetric(float64(size)/cold.Seconds()/1e6, "cold-fill-MB/s")
		b.ReportMetric(float64(coldReads), "cold-fill-gcs-reads")
		b.ReportMetric(float64(m.Cache.Stats.ReadBackChecks.Load()), "cold-fill-read-back-checks")
		b.ReportMetric(waitPT.Seconds(), "cold-fill-to-passthrough-s")
		b.ReportMetric(float64(coldBytes)/mib, "cold-fill-fetched-MiB")
		b.ReportMetric(float64(coldRA)/mib, "cold-fill-readahead-MiB")
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
		op0, pt0 := m2.FS.Stats.Opens.Load(), m2.FS.Stats.PassthroughOpens.Load()
		rd0, g0 := m2.FS.Stats.Reads.Load(), gc.Stats.Reads.Load()
		pairs(b, file2)
		opens := m2.FS.Stats.Opens.Load() - op0
		b.ReportMetric(float64(m2.FS.Stats.PassthroughOpens.Load()-pt0)/float64(opens), "passthrough-opens/open")
		b.ReportMetric(float64(m2.FS.Stats.Reads.Load()-rd0)/float64(b.N), "daemon-reads/op")
		b.ReportMetric(float64(gc.Stats.Reads.Load()-g0), "gcs-reads")
	})

	// The same, with every operation recorded into OpenTelemetry's SDK (a
	// counter and a latency histogram per read): the metrics' cost on the
	// read path. Its ratio-vs-native against the sub-benchmark above is
	// the overhead (docs/metrics.md).
	m2.close(b)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b.Cleanup(func() { mp.Shutdown(context.Background()) })
	m3 := newMountWith(b, gc, cacheDir, false, &telemetry.Telemetry{Meters: mp})
	file3 := filepath.Join(m3.dir, name)
	if _, err := os.Stat(file3); err != nil {
		b.Fatal(err)
	}
	b.Run("jitfs-no-passthrough-metrics", func(b *testing.B) {
		b.SetBytes(size)
		rd0 := m3.FS.Stats.Reads.Load()
		pairs(b, file3)
		b.ReportMetric(float64(m3.FS.Stats.Reads.Load()-rd0)/float64(b.N), "daemon-reads/op")
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

// BenchmarkColdRandomReads makes 500 random 4 KiB preads (4 KiB-aligned
// offsets, fixed seed) in a large object that is not cached: each iteration
// mounts a fresh cache directory, so neither the cache nor the kernel's page
// cache holds any of it. The lookup (and the directory listing behind it) is
// done before the timed part; the GCS figures count the reads only.
func BenchmarkColdRandomReads(b *testing.B) {
	size := bigSize(b)
	work := b.TempDir()
	const (
		name  = "cold/big.bin"
		reads = 500
		rsize = 4096
	)
	emu := startEmulator(b, emulator.Options{Bucket: benchBucket, StorageRoot: filepath.Join(work, "gcs")})
	data := genData(size, 2)
	emu.Put(benchBucket, name, data)
	pages := size / rsize
	offs := make([]int64, reads)
	want := make([][]byte, reads)
	rng := rand.New(rand.NewPCG(42, 4242))
	for i := range offs {
		offs[i] = rng.Int64N(pages) * rsize
		want[i] = append([]byte(nil), data[offs[i]:offs[i]+rsize]...)
	}
	data = nil
	runtime.GC()
	debug.FreeOSMemory()
	gc := newGCS(b, emu)

	buf := make([]byte, rsize)
	b.Run("500x4KiB", func(b *testing.B) {
		var fetched, requests int64
		var elapsed time.Duration
		b.ResetTimer()
		b.StopTimer()
		for i := range b.N {
			m := newMount(b, gc, filepath.Join(work, fmt.Sprintf("cache%d", i)), true)
			file := filepath.Join(m.dir, name)
			if _, err := os.Stat(file); err != nil {
				b.Fatal(err)
			}
			by0, rq0 := gc.Stats.BytesRead.Load(), gc.Stats.Reads.Load()
			f, err := os.Open(file)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t0 := time.Now()
			for j, off := range offs {
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatalf("pread %d at %d: %v", j, off, err)
				}
				if string(buf) != string(want[j]) {
					b.Fatalf("pread %d at %d: wrong bytes", j, off)
				}
			}
			elapsed += time.Since(t0)
			b.StopTimer()
			f.Close()
			fetched += gc.Stats.BytesRead.Load() - by0
			requests += gc.Stats.Reads.Load() - rq0
			m.close(b)
			os.RemoveAll(m.cacheDir)
		}
		n := float64(b.N)
		b.ReportMetric(float64(fetched)/n/mib, "fetched-MiB/op")
		b.ReportMetric(float64(requests)/n, "gcs-reads/op")
		b.ReportMetric(float64(elapsed.Microseconds())/n/reads, "us/pread")
	})
}

// BenchmarkLookups stats names in a listed directory of 2,000 objects:
//
//   - existing: every name of the directory, after a first listing
//     (readdir) and one warm-up pass of stats.
//   - absent-repeated: the same 2,000 absent names each time; after the
//     first pass the kernel answers them from negative dentries.
//   - absent-first: 2,000 names never asked before in each op; every one
//     reaches the daemon, which answers from the completed listing.
//
// gcs-requests counts every GCS request made during the measured loop
// (0 expected); daemon-lookups/stat shows how many stats reached the daemon.
func BenchmarkLookups(b *testing.B) {
	const files = 2000
	objs := fstest.MapFS{}
	names := make([]string, files)
	for i := range names {
		names[i] = fmt.Sprintf("f%05d.tex", i)
		objs["dir/"+names[i]] = &fstest.MapFile{Data: []byte(names[i])}
	}
	emu := startEmulator(b, emulator.Options{Bucket: benchBucket, Objects: objs})
	gc := newGCS(b, emu)
	m := newMount(b, gc, filepath.Join(b.TempDir(), "cache"), true)
	dir := filepath.Join(m.dir, "dir")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != files {
		b.Fatalf("readdir: %d entries, %v; want %d", len(ents), err, files)
	}
	paths := make([]string, files)
	absent := make([]string, files)
	for i := range paths {
		paths[i] = filepath.Join(dir, names[i])
		absent[i] = filepath.Join(dir, "absent-"+names[i])
	}
	statAll := func(b *testing.B, ps []string, exist bool) {
		for _, p := range ps {
			_, err := os.Stat(p)
			switch {
			case exist && err != nil:
				b.Fatal(err)
			case !exist && !errors.Is(err, fs.ErrNotExist):
				b.Fatalf("stat %s: %v; want not exist", p, err)
			}
		}
	}
	measure := func(b *testing.B, exist bool, batch func(i int) []string, unit string) {
		lk0, rq0 := m.FS.Stats.Lookups.Load(), gcsRequests(gc)
		b.ResetTimer()
		for i := range b.N {
			statAll(b, batch(i), exist)
		}
		b.StopTimer()
		stats := float64(files) * float64(b.N)
		b.ReportMetric(stats/b.Elapsed().Seconds(), unit)
		b.ReportMetric(float64(m.FS.Stats.Lookups.Load()-lk0)/stats, "daemon-lookups/stat")
		b.ReportMetric(float64(gcsRequests(gc)-rq0), "gcs-requests")
	}

	// The first stat of each name after the listing (reported with
	// "existing"); later passes are answered by the kernel's dentry cache.
	lk0, rq0 := m.FS.Stats.Lookups.Load(), gcsRequests(gc)
	t0 := time.Now()
	statAll(b, paths, true)
	first := time.Since(t0)
	firstLookups, firstRequests := m.FS.Stats.Lookups.Load()-lk0, gcsRequests(gc)-rq0

	b.Run("existing", func(b *testing.B) {
		measure(b, true, func(int) []string { return paths }, "warm-stats/s")
		b.ReportMetric(files/first.Seconds(), "first-stats/s")
		b.ReportMetric(float64(firstLookups)/files, "first-daemon-lookups/stat")
		b.ReportMetric(float64(firstRequests), "first-gcs-requests")
	})
	b.Run("absent-repeated", func(b *testing.B) {
		statAll(b, absent, false)
		measure(b, false, func(int) []string { return absent }, "absent-lookups/s")
	})
	var round atomic.Int64
	b.Run("absent-first", func(b *testing.B) {
		fresh := make([]string, files)
		measure(b, false, func(int) []string {
			r := round.Add(1)
			b.StopTimer()
			for j := range fresh {
				fresh[j] = filepath.Join(dir, fmt.Sprintf("new%d-%s", r, names[j]))
			}
			b.StartTimer()
			return fresh
		}, "absent-lookups/s")
	})
}

// manyNames returns n object names spread over 100 directories.
func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("d%03d/f%06d.exr", i%100, i)
	}
	return names
}

// seedMany stores one small object under each name in an emulator with an
// on-disk backend rooted at root. Putting 100k objects through the emulator
// takes minutes (every put is fsynced; the in-memory backend is quadratic),
// so the first object is put normally and the rest are written in the same
// on-disk form (the data file plus the fake-gcs-server metadata xattr,
// whose name, bucket and size the server takes from the path): all objects
// have the same content, so the copied CRC32C and MD5 are right for each.
// If the backend does not keep its metadata in an xattr, every object is
// put through the emulator instead.
func seedMany(b *testing.B, emu *emulator.Server, root string, names []string) {
	b.Helper()
	content := []byte("jitfs benchmark object\n")
	emu.Put(benchBucket, names[0], content)
	const key = "user.metadata"
	tmpl := make([]byte, 64<<10)
	k, err := unix.Getxattr(filepath.Join(root, benchBucket, names[0]), key, tmpl)
	if err != nil {
		b.Logf("emulator metadata is not in an xattr (%v): putting every object", err)
		for _, name := range names[1:] {
			emu.Put(benchBucket, name, content)
		}
		return
	}
	tmpl = tmpl[:k]
	dirs := map[string]bool{}
	for _, name := range names[1:] {
		p := filepath.Join(root, benchBucket, name)
		if d := filepath.Dir(p); !dirs[d] {
			if err := os.MkdirAll(d, 0o700); err != nil {
				b.Fatal(err)
			}
			dirs[d] = true
		}
		if err := os.WriteFile(p, content, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := unix.Setxattr(p, key, tmpl, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// checkSeeded checks through the GCS API that the seeded objects are served.
func checkSeeded(b *testing.B, gc *gcs.Client, names []string) {
	b.Helper()
	ctx := context.Background()
	last := names[len(names)-1]
	if _, err := gc.Stat(ctx, last); err != nil {
		b.Fatalf("seeded object not served: %v", err)
	}
	want := 0
	for _, n := range names {
		if strings.HasPrefix(n, "d000/") {
			want++
		}
	}
	got, token := 0, ""
	for {
		p, err := gc.ListPage(ctx, "d000/", token, 1000)
		if err != nil {
			b.Fatal(err)
		}
		got += len(p.Objects)
		if token = p.Next; token == "" {
			break
		}
	}
	if got != want {
		b.Fatalf("emulator lists %d objects under d000/, want %d", got, want)
	}
}

// procStatus returns a field of /proc/PID/status in bytes (kB fields).
func procStatus(pid, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%s/status", field, pid)
}

// TestMain lets BenchmarkRSS100kFiles re-execute this binary as a daemon.
func TestMain(m *testing.M) { testworld.Main(m, rssDaemon) }

// rssDaemon is BenchmarkRSS100kFiles's daemon: `jitfs mount`'s scene mount
// with its defaults, serving gs://jitfs-bench from the emulator at
// args[0] at args[1] with its cache in args[2] until SIGTERM.
func rssDaemon(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := daemon.StartScene(ctx, daemon.SceneConfig{Bucket: benchBucket, Endpoint: args[0], Mountpoint: args[1], CacheDir: args[2],
		CacheSize: 1 << 30, Passthrough: true, AllowOther: true, AttemptTimeout: time.Minute, OpTimeout: 2 * time.Minute,
		PrefetchWorkers: 32, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// BenchmarkRSS100kFiles stats every one of 100,000 objects spread over 100
// directories and reports the daemon's resident memory afterwards. The
// daemon is this test binary re-executed (rssDaemon) and run as its own
// process against the in-process emulator, so its RSS excludes the emulator
// and the benchmark.
func BenchmarkRSS100kFiles(b *testing.B) {
	n := manyFiles(b)
	work := b.TempDir()
	t0 := time.Now()
	names := manyNames(n)
	root := filepath.Join(work, "gcs")
	emu := startEmulator(b, emulator.Options{Bucket: benchBucket, StorageRoot: root})
	seedMany(b, emu, root, names)
	seed := time.Since(t0)
	checkSeeded(b, newGCS(b, emu), names)

	mnt := filepath.Join(work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	d := testworld.StartDaemon(b, mnt, nil, emu.Addr(), mnt, filepath.Join(work, "cache"))
	pid := strconv.Itoa(d.Pid())
	rss0, err := procStatus(pid, "VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	paths := make([]string, n)
	for i, name := range names {
		paths[i] = filepath.Join(mnt, name)
	}

	// Four stat workers, each on its own directories (names[i] is in
	// directory i%100), so directory listings overlap.
	statAll := func() error {
		const workers = 4
		var wg sync.WaitGroup
		var failed atomic.Value
		for w := range workers {
			wg.Go(func() {
				for j, p := range paths {
					if j%100%workers != w {
						continue
					}
					if _, err := os.Stat(p); err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		err, _ := failed.Load().(error)
		return err
	}
	// The first pass lists every directory and creates every inode; its
	// speed is bounded by the emulator's listings (see docs/BENCHMARKS.md).
	t0 = time.Now()
	if err := statAll(); err != nil {
		b.Fatal(err)
	}
	first := time.Since(t0)

	// Later passes are answered from the kernel's caches; RSS is read after.
	b.Run("stat-all", func(b *testing.B) {
		b.ResetTimer()
		for range b.N {
			if err := statAll(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		rss, err := procStatus(pid, "VmRSS")
		if err != nil {
			b.Fatal(err)
		}
		hwm, _ := procStatus(pid, "VmHWM")
		b.ReportMetric(float64(n), "files")
		b.ReportMetric(float64(rss)/mib, "daemon-RSS-MiB")
		b.ReportMetric(float64(hwm)/mib, "daemon-peak-RSS-MiB")
		b.ReportMetric(float64(rss0)/mib, "daemon-RSS-at-mount-MiB")
		b.ReportMetric(float64(n)/first.Seconds(), "first-stats/s")
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "warm-stats/s")
		b.ReportMetric(seed.Seconds(), "emulator-seed-s")
	})
}

// memSource serves deterministic 1 KiB objects named by their index.
type memSource struct{}

func smallContent(name string) []byte {
	p := make([]byte, 1024)
	for i := range p {
		p[i] = name[i%len(name)]
	}
	return p
}

func (memSource) ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error {
	c := smallContent(name)
	if off < 0 || off+int64(len(p)) > int64(len(c)) {
		return fmt.Errorf("memSource: range [%d,%d) outside %s", off, off+int64(len(p)), name)
	}
	copy(p, c[off:])
	return nil
}

// BenchmarkCacheStartup100k times cache.New on a directory holding 100,000
// cached 1 KiB objects, filled through cache.Open and Handle.ReadAt from an
// in-memory Source (so the layout is the cache's own).
//
//   - restart: the directory's metadata is in the kernel's caches, as after
//     a daemon restart.
//   - cold: dentries, inodes and pages dropped first (drop_caches 3), as
//     after a reboot; falls back to warm if drop_caches is not writable.
func BenchmarkCacheStartup100k(b *testing.B) {
	n := manyFiles(b)
	dir := filepath.Join(b.TempDir(), "cache")
	opts := cache.Options{Dir: dir, Budget: 4 << 30, Logger: quietLogger()}

	// Fill in batches: the cache keeps two descriptors open per object
	// until it is evicted or the cache closed (see docs/BENCHMARKS.md).
	t0 := time.Now()
	const batch = 4000
	for lo := 0; lo < n; lo += batch {
		c, err := cache.New(opts)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		var failed atomic.Value
		next := atomic.Int64{}
		next.Store(int64(lo))
		hi := int64(min(lo+batch, n))
		for range 8 {
			wg.Go(func() {
				buf := make([]byte, 1024)
				for i := next.Add(1) - 1; i < hi; i = next.Add(1) - 1 {
					name := fmt.Sprintf("objs/o%07d.bin", i)
					m := cache.Meta{Bucket: benchBucket, Name: name, Gen: 1, Size: 1024,
						CRC32C: crc32.Checksum(smallContent(name), castagnoli), HasCRC32C: true}
					h, err := c.Open(m, memSource{})
					if err == nil {
						_, err = h.ReadAt(context.Background(), buf, 0)
						h.Close()
					}
					if err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	fill := time.Since(t0)

	open := func(b *testing.B) {
		c, err := cache.New(opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := c.Len(); got != n {
			b.Fatalf("cache indexed %d objects, want %d", got, n)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for _, mode := range []string{"restart", "cold"} {
		b.Run(mode, func(b *testing.B) {
			b.ResetTimer()
			for range b.N {
				if mode == "cold" {
					b.StopTimer()
					dropCaches(b, "3")
					b.StartTimer()
				}
				open(b)
			}
			b.StopTimer()
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "startup-s")
			b.ReportMetric(float64(n), "objects")
			b.ReportMetric(fill.Seconds(), "fill-s")
		})
	}
}

// BenchmarkTreeRead reads a tree of 2,000 files of 64 KiB in 20
// directories (open, read whole, close, in listing order) through a warm
// mount and from a local copy, side by side: with the page cache hot
// ("hot", -x-local), and after drop_caches with the cache on disk ("disk").
// It is the per-open cost of the daemon: every byte is local either way.
func BenchmarkTreeRead(b *testing.B) {
	const dirs, per, size = 20, 100, 64 << 10
	work := b.TempDir()
	local := filepath.Join(work, "local")
	objs := fstest.MapFS{}
	var rels []string
	for d := range dirs {
		for f := range per {
			rel := fmt.Sprintf("tree/d%02d/f%03d.exr", d, f)
			data := genData(size, uint64(d*per+f))
			objs[rel] = &fstest.MapFile{Data: data}
			rels = append(rels, rel)
			p := filepath.Join(local, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	emu := startEmulator(b, emulator.Options{Bucket: benchBucket, Objects: objs})
	gc := newGCS(b, emu)
	m := newMount(b, gc, filepath.Join(work, "cache"), true)
	buf := make([]byte, size+1)
	readAll := func(b *testing.B, root string) {
		for _, rel := range rels {
			f, err := os.Open(filepath.Join(root, rel))
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.ReadFull(f, buf)
			if n != size || !errors.Is(err, io.ErrUnexpectedEOF) {
				b.Fatalf("%s: read %d bytes, %v", rel, n, err)
			}
			f.Close()
		}
	}
	// Fill the cache, and wait until every file is handed out for
	// passthrough (verified complete).
	readAll(b, m.dir)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		before := m.FS.Stats.PassthroughOpens.Load()
		readAll(b, m.dir)
		if m.FS.Stats.PassthroughOpens.Load()-before == int64(len(rels)) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("files never handed out for passthrough")
		}
	}
	ratio := func(b *testing.B, prep func()) {
		var jit, loc time.Duration
		for b.Loop() {
			prep()
			t0 := time.Now()
			readAll(b, m.dir)
			jit += time.Since(t0)
			prep()
			t0 = time.Now()
			readAll(b, local)
			loc += time.Since(t0)
		}
		b.ReportMetric(jit.Seconds()/float64(b.N), "jitfs-s/tree")
		b.ReportMetric(loc.Seconds()/float64(b.N), "local-s/tree")
		b.ReportMetric(jit.Seconds()/loc.Seconds(), "x-local")
	}
	b.Run("hot", func(b *testing.B) { ratio(b, func() {}) })
	b.Run("disk", func(b *testing.B) { ratio(b, func() { dropCaches(b, "3") }) })
}
