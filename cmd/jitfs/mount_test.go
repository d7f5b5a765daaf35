package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/testworld"
)

func TestNamespaceAndENOENT(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{
		"show/shots/sh010/sh010.scene":    w.PutRandom("show/shots/sh010/sh010.scene", 300),
		"show/assets/tex/brick.tex":       w.PutRandom("show/assets/tex/brick.tex", 70000),
		"show/assets/tex/udim/g.1001.tex": w.PutRandom("show/assets/tex/udim/g.1001.tex", 5000),
		"show/assets/empty":               w.PutRandom("show/assets/empty", 0),
		"other/not-under-the-prefix.txt":  w.PutRandom("other/not-under-the-prefix.txt", 10),
	}
	d := w.mountForTest("show", "")

	ents, err := os.ReadDir(d.path("assets"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, fmt.Sprintf("%s:%v", e.Name(), e.IsDir()))
	}
	if got := strings.Join(names, " "); got != "empty:false tex:true" {
		t.Fatalf("readdir assets = %q", got)
	}
	for name, content := range want {
		rel, ok := strings.CutPrefix(name, "show/")
		if !ok {
			if _, err := os.Stat(d.path(name)); errnoOf(err) != syscall.ENOENT {
				t.Fatalf("object outside the prefix visible: %v", err)
			}
			continue
		}
		st, err := os.Stat(d.path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != int64(len(content)) || st.Mode().Perm() != 0o444 || !st.Mode().IsRegular() {
			t.Fatalf("%s: size %d mode %v", rel, st.Size(), st.Mode())
		}
		mustEqualBytes(t, rel, mustRead(t, d.path(rel)), content)
	}
	st, err := os.Stat(d.path("assets/tex"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o555 {
		t.Fatalf("dir stat: %v %v", st, err)
	}

	// Absent names in a listed directory are answered locally: probing
	// hundreds of them (search paths, extension guesses) costs no request.
	lists, stats := w.Proxy.Lists.Load(), w.Proxy.Stats.Load()
	for i := 0; i < 300; i++ {
		_, err := os.Stat(d.path(fmt.Sprintf("assets/tex/missing_%d.tx", i)))
		if errnoOf(err) != syscall.ENOENT {
			t.Fatalf("absent name: %v", err)
		}
		if _, err := os.Stat(d.path("assets/tex/brick.tex")); err != nil {
			t.Fatal(err)
		}
	}
	if dl, ds := w.Proxy.Lists.Load()-lists, w.Proxy.Stats.Load()-stats; dl != 0 || ds != 0 {
		t.Fatalf("lookups in a listed directory made %d list and %d stat requests", dl, ds)
	}

	// Read-only.
	if _, err := os.OpenFile(d.path("assets/tex/brick.tex"), os.O_WRONLY, 0); errnoOf(err) != syscall.EROFS && errnoOf(err) != syscall.EACCES {
		t.Fatalf("write open: %v", err)
	}
	if err := os.WriteFile(d.path("new.txt"), []byte("x"), 0o644); err == nil {
		t.Fatal("create succeeded on a read-only mount")
	}
}

func TestLargeDirectoryLookupsDoNotWaitForListing(t *testing.T) {
	w := newWorld(t, false)
	const n = 2500
	for i := 0; i < n; i++ {
		w.Put(fmt.Sprintf("big/f%05d", i), []byte{byte(i)})
	}
	// Slow listings down so the second page is still pending when the
	// lookup arrives.
	d := w.mountForTest("", "")
	b, err := os.ReadFile(d.path("big/f02400"))
	if err != nil || len(b) != 1 || b[0] != byte(2400%256) {
		t.Fatalf("read from a large directory: %v %v", b, err)
	}
	ents, err := os.ReadDir(d.path("big"))
	if err != nil || len(ents) != n {
		t.Fatalf("readdir: %d entries, %v", len(ents), err)
	}
	if _, err := os.Stat(d.path("big/nope")); errnoOf(err) != syscall.ENOENT {
		t.Fatalf("absent: %v", err)
	}
}

func TestReadsAtOffsetsAndConcurrentReaders(t *testing.T) {
	w := newWorld(t, false)
	const size = 40<<20 + 12345
	content := w.PutRandom("plates/plate.exr", size)
	small := w.PutRandom("plates/small.tx", 100_000)
	d := w.mountForTest("", "")

	// Many concurrent readers of one cold file share fetches.
	media0, bytes0 := w.Proxy.MediaReqs.Load(), w.Proxy.MediaBytes.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := os.ReadFile(d.path("plates/small.tx"))
			if err == nil && sha256.Sum256(b) != sha256.Sum256(small) {
				err = fmt.Errorf("concurrent reader got wrong bytes")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if dm, db := w.Proxy.MediaReqs.Load()-media0, w.Proxy.MediaBytes.Load()-bytes0; dm != 1 || db != int64(len(small)) {
		t.Fatalf("16 readers of a cold small file: %d media requests, %d bytes; want 1 and %d", dm, db, len(small))
	}

	f, err := os.Open(d.path("plates/plate.exr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 256<<10)
	for i := 0; i < 200; i++ {
		off := r.Int64N(size)
		n := 1 + r.IntN(len(buf))
		k, err := f.ReadAt(buf[:n], off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		mustEqualBytes(t, fmt.Sprintf("pread(%d,%d)", off, n), buf[:k], content[off:min(off+int64(n), size)])
	}
	// Last bytes and beyond EOF.
	k, err := f.ReadAt(buf[:100], size-10)
	if k != 10 || err != io.EOF {
		t.Fatalf("read at end: %d %v", k, err)
	}

	// A whole sequential read of the large file is correct and is not
	// fetched twice.
	got := mustRead(t, d.path("plates/plate.exr"))
	mustEqualBytes(t, "sequential read", got, content)
	if total := w.Proxy.MediaBytes.Load(); total > int64(size)+int64(len(small))+(1<<20) {
		t.Fatalf("fetched %d bytes for a %d-byte object", total, size)
	}
}

func TestMmap(t *testing.T) {
	w := newWorld(t, false)
	content := w.PutRandom("lib/props.blend", 3<<20+77)
	d := w.mountForTest("", "")
	f, err := os.Open(d.path("lib/props.blend"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, len(content), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	// Touch a few pages out of order, as a mapped library is.
	for _, off := range []int{2 << 20, 0, len(content) - 1, 1 << 20} {
		if m[off] != content[off] {
			t.Fatalf("mmap byte %d differs", off)
		}
	}
	mustEqualBytes(t, "mmap", m, content)
}

func TestRestartServesCacheWithZeroDownloads(t *testing.T) {
	w := newWorld(t, false)
	files := map[string][]byte{}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("tex/t%02d.tx", i)
		files[name] = w.PutRandom(name, 1000+i*37_000)
	}
	files["big/cache.vdb"] = w.PutRandom("big/cache.vdb", 12<<20)
	d := w.mountForTest("", "")
	for name, c := range files {
		mustEqualBytes(t, name, mustRead(t, d.path(name)), c)
	}
	d.Restart()
	media := w.Proxy.MediaReqs.Load()
	for name, c := range files {
		mustEqualBytes(t, name+" after restart", mustRead(t, d.path(name)), c)
	}
	if dm := w.Proxy.MediaReqs.Load() - media; dm != 0 {
		t.Fatalf("restarted daemon made %d GCS data requests for cached files", dm)
	}
}

// TestRestartNeverShowsTheBareDirectory: after a daemon is killed, a reader's
// open gets ENOTCONN until the next daemon's mount is live, and never the bare
// mountpoint directory beneath (ENOENT), which a renderer could take for a
// missing optional file. A stopped daemon leaves a plain directory (the
// harness checks that no mount is left).
func TestRestartNeverShowsTheBareDirectory(t *testing.T) {
	w := newWorld(t, false)
	content := w.PutRandom("tex/a.tx", 100_000)
	d := w.mountForTest("", "")
	mustEqualBytes(t, "before the kill", mustRead(t, d.path("tex/a.tx")), content)
	d.Kill()

	var mu sync.Mutex
	seen := map[syscall.Errno]int{}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// An open reaches the daemon (a stat could be answered from
			// the kernel's attribute cache of the dead mount).
			f, err := os.Open(d.path("tex/a.tx"))
			if err == nil {
				f.Close()
			}
			mu.Lock()
			seen[errnoOf(err)]++
			mu.Unlock()
		}
	}()
	waitFor(t, "a reader to see the dead mount", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[syscall.ENOTCONN] > 0
	})
	d.Start()
	waitFor(t, "the restarted mount to answer", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[0] > 0
	})
	close(stop)
	<-finished
	if seen[syscall.ENOENT] > 0 {
		t.Fatalf("a reader saw ENOENT %d times during the restart (stats by errno: %v)", seen[syscall.ENOENT], seen)
	}
	mustEqualBytes(t, "after the restart", mustRead(t, d.path("tex/a.tx")), content)
	t.Logf("stats during the restart, by errno: %v", seen)
}

func TestEvictionUnderSmallBudget(t *testing.T) {
	w := newWorld(t, false)
	var names []string
	files := map[string][]byte{}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("seq/frame.%04d.exr", 1001+i)
		names = append(names, name)
		files[name] = w.PutRandom(name, 2<<20)
	}
	d := w.mountForTest("", "", "--cache-size", "8MiB")
	for _, name := range names {
		mustEqualBytes(t, name, mustRead(t, d.path(name)), files[name])
	}
	deadline := time.Now().Add(15 * time.Second)
	var used int64
	for {
		used = diskUsage(t, filepath.Join(d.cacheDir, "objects"))
		if used <= 8<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if used > 8<<20 {
		t.Fatalf("cache uses %d bytes on disk, budget 8 MiB", used)
	}
	// Evicted data is fetched again, correctly.
	media := w.Proxy.MediaReqs.Load()
	testworld.DropPageCache(t, d.path(names[0]))
	mustEqualBytes(t, names[0], mustRead(t, d.path(names[0])), files[names[0]])
	if w.Proxy.MediaReqs.Load() == media {
		t.Fatal("the oldest frame was not evicted")
	}
}

func diskUsage(t *testing.T, dir string) int64 {
	var total int64
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return total
}

func TestGenerationPinning(t *testing.T) {
	for _, versioning := range []bool{true, false} {
		t.Run(fmt.Sprintf("versioning=%v", versioning), func(t *testing.T) {
			w := newWorld(t, versioning)
			old := w.PutRandom("shot/cache.bin", 6<<20)
			d := w.mountForTest("", "")
			f, err := os.Open(d.path("shot/cache.bin"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 1<<20)
			if _, err := f.ReadAt(head, 0); err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, "head", head, old[:1<<20])
			// Overwrite with different content and a different size.
			w.Put("shot/cache.bin", testworld.RandBytes("new", 7<<20))
			tail := make([]byte, 1<<20)
			_, err = f.ReadAt(tail, 5<<20)
			if versioning {
				if err != nil {
					t.Fatalf("old generation still readable, got %v", err)
				}
				mustEqualBytes(t, "pinned tail", tail, old[5<<20:6<<20])
				if st, _ := os.Stat(d.path("shot/cache.bin")); st.Size() != 6<<20 {
					t.Fatalf("size changed under a pinned generation: %d", st.Size())
				}
				return
			}
			if errnoOf(err) != syscall.EIO {
				t.Fatalf("read of a vanished generation: %v, want EIO", err)
			}
			if !strings.Contains(d.Log.String(), "shot/cache.bin") {
				t.Fatalf("no log line names the object:\n%s", d.Log)
			}
			// The daemon keeps serving.
			if _, err := os.ReadDir(d.path("shot")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGCSFaults(t *testing.T) {
	w := newWorld(t, false)
	files := map[string][]byte{}
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("f/%d.bin", i)
		files[name] = w.PutRandom(name, 3<<20)
	}
	// Speculation would fetch f/3.bin before the outage that this test
	// needs its read to meet.
	d := w.mountForTest("", "", "--gcs-attempt-timeout", "1s", "--speculate", "none")

	// Transient 503s are retried.
	w.Proxy.FailMedia.Store(2)
	mustEqualBytes(t, "after 503s", mustRead(t, d.path("f/0.bin")), files["f/0.bin"])
	// Truncated bodies are retried, never served.
	w.Proxy.TruncateMedia.Store(2)
	mustEqualBytes(t, "after truncation", mustRead(t, d.path("f/1.bin")), files["f/1.bin"])
	// A stalled response is abandoned after the attempt timeout and retried.
	w.Proxy.StallMedia.Store(int64(3 * time.Second))
	stalled := w.Proxy.MediaReqs.Load()
	go func() {
		// Lift the stall once an attempt has been abandoned and retried
		// (a second request reached the proxy), however long that takes.
		for w.Proxy.MediaReqs.Load()-stalled < 2 {
			time.Sleep(5 * time.Millisecond)
		}
		w.Proxy.StallMedia.Store(0)
	}()
	mustEqualBytes(t, "after stall", mustRead(t, d.path("f/2.bin")), files["f/2.bin"])

	// An outage fails the reader with EIO, and only that reader.
	w.Proxy.Outage.Store(true)
	_, err := os.ReadFile(d.path("f/3.bin"))
	if errnoOf(err) != syscall.EIO {
		t.Fatalf("read during outage: %v, want EIO", err)
	}
	mustEqualBytes(t, "cached during outage", mustRead(t, d.path("f/0.bin")), files["f/0.bin"])
	w.Proxy.Outage.Store(false)
	mustEqualBytes(t, "after outage", mustRead(t, d.path("f/3.bin")), files["f/3.bin"])
}

// TestStalledLinkFailsFast stalls every request to GCS (a link that stops
// passing packets): a lookup in a directory not yet listed and a read of a
// file not yet cached each fail with EIO once --op-timeout has passed,
// rather than hang; once the link is back, both succeed.
func TestStalledLinkFailsFast(t *testing.T) {
	w := newWorld(t, false)
	unlisted := w.PutRandom("shots/sh010/plate.exr", 300_000)
	uncached := w.PutRandom("tex/wall.tx", 3<<20)
	// Without metadata list-ahead, whose one listing of the root would
	// list shots/sh010 with tex (TestListAheadStalledLink stalls that).
	d := w.mountForTest("", "", "--op-timeout", "2s", "--gcs-attempt-timeout", "1s", "--speculate", "siblings,sequences,coopen")
	if _, err := os.Stat(d.path("tex/wall.tx")); err != nil {
		t.Fatal(err)
	}
	w.Proxy.StallAll.Store(true)
	if _, err := os.Stat(d.path("shots/sh010/plate.exr")); errnoOf(err) != syscall.EIO {
		t.Fatalf("stat in an unlisted directory on a stalled link: %v, want EIO", err)
	}
	if _, err := os.ReadFile(d.path("tex/wall.tx")); errnoOf(err) != syscall.EIO {
		t.Fatalf("read of an uncached file on a stalled link: %v, want EIO", err)
	}
	if w.Proxy.Held.Load() == 0 {
		t.Fatal("the proxy held no request: the link was not stalled")
	}
	if n := strings.Count(d.Log.String(), "op_timeout"); n < 2 {
		t.Fatalf("%d operations logged as timed out, want 2:\n%s", n, d.Log)
	}
	w.Proxy.StallAll.Store(false)
	// The listing and fetch the failed operations started may still be in
	// a retry backoff: try until they answer.
	waitFor(t, "the lookup to succeed once the link is back", time.Minute, func() bool {
		_, err := os.Stat(d.path("shots/sh010/plate.exr"))
		return err == nil
	})
	mustEqualBytes(t, "unlisted file after the stall", mustRead(t, d.path("shots/sh010/plate.exr")), unlisted)
	var got []byte
	waitFor(t, "the read to succeed once the link is back", time.Minute, func() bool {
		b, err := os.ReadFile(d.path("tex/wall.tx"))
		got = b
		return err == nil
	})
	mustEqualBytes(t, "uncached file after the stall", got, uncached)
}

func TestSIGKILLDuringFillThenRestart(t *testing.T) {
	w := newWorld(t, false)
	const size = 24 << 20
	content := w.PutRandom("sim/cache.vdb", size)
	other := w.PutRandom("sim/other.vdb", 4<<20)
	d := w.mountForTest("", "")
	mustEqualBytes(t, "other", mustRead(t, d.path("sim/other.vdb")), other)

	// Slow the link so the daemon is killed with fills in flight.
	w.Proxy.MediaRate.Store(8 << 20)
	done := make(chan error, 1)
	go func() {
		_, err := exec.Command("cat", d.path("sim/cache.vdb")).Output()
		done <- err
	}()
	// Kill once a fill is certainly in flight: some of the object's bytes
	// have crossed the link, far fewer than one 8 MiB part.
	sent := w.Proxy.MediaBytes.Load()
	waitFor(t, "the fill to start", time.Minute, func() bool { return w.Proxy.MediaBytes.Load()-sent >= 1<<20 })
	d.Kill()
	<-done // the reader fails with ENOTCONN; that is expected after a crash
	w.Proxy.MediaRate.Store(0)

	// Simulate a torn journal append as well.
	jnls, _ := filepath.Glob(filepath.Join(d.cacheDir, "objects", "*", "*.jnl"))
	if len(jnls) < 2 {
		t.Fatalf("expected journals for both objects, found %d", len(jnls))
	}
	for _, j := range jnls {
		f, _ := os.OpenFile(j, os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString("R 0 99999999")
		f.Close()
	}
	d.Start() // detaches the dead mount, reuses the cache
	mustEqualBytes(t, "after SIGKILL", mustRead(t, d.path("sim/cache.vdb")), content)
	media := w.Proxy.MediaReqs.Load()
	mustEqualBytes(t, "cached before SIGKILL", mustRead(t, d.path("sim/other.vdb")), other)
	if w.Proxy.MediaReqs.Load() != media {
		t.Fatal("a file cached before the crash was fetched again")
	}
}

func TestCorruptCachedBytesAreRefetched(t *testing.T) {
	w := newWorld(t, false)
	content := w.PutRandom("tex/wall.tx", 5<<20)
	d := w.mountForTest("", "")
	mustEqualBytes(t, "first", mustRead(t, d.path("tex/wall.tx")), content)
	d.Stop()
	datas, _ := filepath.Glob(filepath.Join(d.cacheDir, "objects", "*", "*.data"))
	if len(datas) != 1 {
		t.Fatalf("want 1 data file, found %d", len(datas))
	}
	f, err := os.OpenFile(datas[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage!"), 3<<20)
	f.Close()
	d.Start()
	mustEqualBytes(t, "after corruption", mustRead(t, d.path("tex/wall.tx")), content)
	if !strings.Contains(d.Log.String(), "verification") {
		t.Fatalf("corruption was not reported:\n%s", d.Log)
	}
}

// TestFullCacheDiskNeverFailsARead mounts with the cache on a small tmpfs
// and fills that disk before anything is read: every open and read through
// the mount succeeds (served from memory), each byte is fetched once, and
// the condition is logged.
func TestFullCacheDiskNeverFailsARead(t *testing.T) {
	w := newWorld(t, false)
	files := map[string][]byte{}
	var total int
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("tex/t%02d.tx", i)
		size := 1000 + i*23_000
		if i%10 == 9 {
			size = 6<<20 + i
		}
		files[name] = w.PutRandom(name, size)
		total += size
	}
	cacheDir := t.TempDir()
	if err := syscall.Mount("tmpfs", cacheDir, "tmpfs", 0, "size=2m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(cacheDir, syscall.MNT_DETACH) })
	d := w.mountForTest("", cacheDir)
	filler, err := os.Create(filepath.Join(cacheDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 4096))
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the cache disk: %v", err)
	}
	media := w.Proxy.MediaBytes.Load()
	for name, c := range files {
		mustEqualBytes(t, name+" on a full cache disk", mustRead(t, d.path(name)), c)
	}
	if got := w.Proxy.MediaBytes.Load() - media; got > int64(total) {
		t.Fatalf("reading %d bytes onto a full cache disk fetched %d", total, got)
	}
	if !strings.Contains(d.Log.String(), "serving from memory") {
		t.Fatalf("the full cache disk was not logged:\n%s", d.Log)
	}
}

// TestVerifyStrictThroughTheMount flips one byte in one GCS response of a
// large object. With --verify strict the reader gets exact bytes; in the
// default streaming mode the daemon's log names the process that was served
// bytes before the object failed its check.
func TestVerifyStrictThroughTheMount(t *testing.T) {
	w := newWorld(t, false)
	content := w.PutRandom("cache/smoke.vdb", 6<<20)
	w.PutRandom("cache/fire.vdb", 6<<20)

	strict := w.mountForTest("", "", "--verify", "strict")
	w.Proxy.CorruptMedia.Store(1)
	mustEqualBytes(t, "strict read of a corrupted response", mustRead(t, strict.path("cache/smoke.vdb")), content)
	if w.Proxy.CorruptMedia.Load() != 0 {
		t.Fatal("no response was corrupted; the test checks nothing")
	}
	strict.Stop()

	streaming := w.mountForTest("", "")
	w.Proxy.CorruptMedia.Store(1)
	cat := exec.Command("cat", streaming.path("cache/fire.vdb"))
	cat.Stdout = io.Discard
	cat.Run() // it may fail with EIO once the mismatch is found: either way it read unchecked bytes
	waitFor(t, "the late mismatch to be logged", time.Minute, func() bool {
		return strings.Contains(streaming.Log.String(), "served_before_check_to")
	})
	if log := streaming.Log.String(); !strings.Contains(log, "(cat)") {
		t.Fatalf("the late mismatch does not name the reader:\n%s", log)
	}
}

func TestProgramsReadTheMount(t *testing.T) {
	w := newWorld(t, false)
	content := w.PutRandom("shots/sh010/plate.0001.exr", 3_000_001)
	d := w.mountForTest("", "")
	p := d.path("shots/sh010/plate.0001.exr")
	want := fmt.Sprintf("%x", sha256.Sum256(content))

	out, err := exec.Command("sha256sum", p).Output()
	if err != nil || !strings.HasPrefix(string(out), want) {
		t.Fatalf("sha256sum: %s %v", out, err)
	}
	out, err = exec.Command("sh", "-c", "cat "+p+" | sha256sum").Output()
	if err != nil || !strings.HasPrefix(string(out), want) {
		t.Fatalf("cat: %s %v", out, err)
	}
	out, err = exec.Command("sh", "-c", "dd if="+p+" bs=4096 skip=100 count=10 status=none | sha256sum").Output()
	if got := fmt.Sprintf("%x", sha256.Sum256(content[409600:450560])); err != nil || !strings.HasPrefix(string(out), got) {
		t.Fatalf("dd: %s %v", out, err)
	}
	py := `import hashlib,os,sys
p=sys.argv[1]
print(hashlib.sha256(open(p,'rb').read()).hexdigest())
print(sorted(os.listdir(os.path.dirname(p))), os.path.exists(p+'.missing'))`
	out, err = exec.Command("python3", "-c", py, p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "['plate.0001.exr'] False") {
		t.Fatalf("python: %s %v", out, err)
	}
	out, err = exec.Command("find", d.mnt, "-type", "f").Output()
	if err != nil || strings.TrimSpace(string(out)) != p {
		t.Fatalf("find: %q %v", out, err)
	}
}

func TestBadInputFailsBeforeMounting(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("a/b", 1)
	mnt := t.TempDir()
	cache := filepath.Join(t.TempDir(), "c")
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing bucket", []string{"mount", "gs://no-such-bucket", mnt, "--cache-dir", cache, "--endpoint", w.Proxy.Addr()}, 1, "bucket not found"},
		{"missing mountpoint", []string{"mount", "gs://" + testBucket, filepath.Join(mnt, "nope"), "--cache-dir", cache, "--endpoint", w.Proxy.Addr()}, 1, "does not exist"},
		{"not a URL", []string{"mount", "s3://x", mnt}, 2, "gs://"},
		{"bad size", []string{"mount", "gs://b", mnt, "--cache-size", "lots"}, 2, "invalid size"},
		{"bad flag", []string{"mount", "gs://b", mnt, "--no-such-flag"}, 2, "no-such-flag"},
		{"one argument", []string{"mount", "gs://b"}, 2, "MOUNTPOINT"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, code := runJitfs(t, c.args...)
			if code != c.code || !strings.Contains(out, c.msg) {
				t.Fatalf("exit %d, output %q; want exit %d mentioning %q", code, out, c.code, c.msg)
			}
			if c.code == 1 && !oneLine(out) {
				t.Fatalf("error is not one line: %q", out)
			}
		})
	}

	d := w.mountForTest("", "")
	t.Run("busy mountpoint", func(t *testing.T) {
		out, code := runJitfs(t, "mount", "gs://"+testBucket, d.mnt, "--cache-dir", cache, "--endpoint", w.Proxy.Addr())
		if code != 1 || !strings.Contains(out, "busy") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("second daemon on one cache", func(t *testing.T) {
		out, code := runJitfs(t, "mount", "gs://"+testBucket, t.TempDir(), "--cache-dir", d.cacheDir, "--endpoint", w.Proxy.Addr())
		if code != 1 || !strings.Contains(out, "in use by another jitfs daemon") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
}

func TestDemo(t *testing.T) {
	out, code := runJitfs(t, "demo", "--show-size", "32MiB")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	lines := strings.Split(out, "\n")
	var after string
	for _, l := range lines {
		if strings.Contains(l, "frame 1001 after restart") {
			after = l
		}
	}
	f := strings.Fields(after)
	sort.Strings(f)
	if after == "" || !strings.Contains(after, " 0 B") {
		t.Fatalf("restart row should show 0 B over the link:\n%s", out)
	}
}
