package metastore

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/namespace"
)

// fill saves dirs listings of files files each for one job and closes
// the store.
func fill(b *testing.B, path string, dirs, files int) {
	b.Helper()
	s, _ := open(b, path)
	if err := s.PutJob(Job{ID: "job", Started: t0}); err != nil {
		b.Fatal(err)
	}
	ls := s.Listings("job", "bucket/show/")
	for d := range dirs {
		dir := fmt.Sprintf("seq/shot%03d", d)
		ls.SaveDir(dir, listing("job", "bucket/show/", dir, files, int64(d)))
	}
	flush(b, s)
	closeStore(b, s)
}

func BenchmarkLoadDir1000(b *testing.B) {
	path := b.TempDir() + "/meta.db"
	fill(b, path, 1, 1000)
	s, _ := open(b, path)
	defer closeStore(b, s)
	ls := s.Listings("job", "bucket/show/")
	b.ReportAllocs()
	for b.Loop() {
		if l, ok := ls.LoadDir("seq/shot000"); !ok || len(l.Files) != 1000 {
			b.Fatal("listing not found")
		}
	}
}

// BenchmarkSaveDir1000 is one listing of 1,000 files saved and committed
// (encoding, one transaction, its fsyncs): the worst case, a batch of one.
func BenchmarkSaveDir1000(b *testing.B) {
	s, _ := open(b, b.TempDir()+"/meta.db")
	defer closeStore(b, s)
	if err := s.PutJob(Job{ID: "job", Started: t0}); err != nil {
		b.Fatal(err)
	}
	ls := s.Listings("job", "bucket/show/")
	l := listing("job", "bucket/show/", "d", 1000, 1)
	i := 0
	for b.Loop() {
		ls.SaveDir(fmt.Sprint("d", i%100), l)
		flush(b, s)
		i++
	}
}

// BenchmarkReopen100k is a restart: open a store holding 100,000 objects'
// listings (1 job × 100 directories × 1,000 files), with all its checks,
// and load the first directory. "cold" drops the file from the page cache
// before each open, as after a reboot.
func BenchmarkReopen100k(b *testing.B) {
	path := b.TempDir() + "/meta.db"
	fill(b, path, 100, 1000)
	if fi, err := os.Stat(path); err == nil {
		b.Logf("store of 100,000 objects: %.1f MiB", float64(fi.Size())/(1<<20))
	}
	for _, cold := range []bool{false, true} {
		b.Run(map[bool]string{false: "warm", true: "cold"}[cold], func(b *testing.B) {
			var total, check time.Duration
			for b.Loop() {
				if cold {
					b.StopTimer()
					dropCache(b, path)
					b.StartTimer()
				}
				start := time.Now()
				s, err := Open(Options{Path: path})
				if err != nil {
					b.Fatal(err)
				}
				l, ok := s.Listings("job", "bucket/show/").LoadDir("seq/shot050")
				total += time.Since(start)
				check += s.checkTook
				if !ok || len(l.Files) != 1000 {
					b.Fatal("listing not found")
				}
				if r, why := s.Rebuilt(); r {
					b.Fatal(why)
				}
				b.StopTimer()
				closeStore(b, s)
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/restart")
			b.ReportMetric(float64(check.Microseconds())/1e3/float64(b.N), "ms/open+check")
		})
	}
}

func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

var _ namespace.Store = (*listings)(nil)
