package jitfs

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/testworld"
)

// holdBound bounds how long a test hook holds a request waiting for the
// other side of a race. It is a guard against a hung test, not a timing
// assumption: every wait below ends on a condition long before it.
const holdBound = 2 * time.Minute

// releaseCounter counts RELEASE requests go-fuse has wholly finished
// (the releaseFence hook), backing-id bookkeeping included.
type releaseCounter struct {
	mu   sync.Mutex
	n    int
	cond *sync.Cond
}

func newReleaseCounter() *releaseCounter {
	c := &releaseCounter{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *releaseCounter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	c.cond.Broadcast()
}

// waitFor blocks until at least n releases have finished.
func (c *releaseCounter) waitFor(t *testing.T, n int) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		c.mu.Lock()
		for c.n < n {
			c.cond.Wait()
		}
		c.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(holdBound):
		t.Fatalf("release %d never finished", n)
	}
}

type passthroughMount struct {
	dir      string
	fs       *FS
	releases *releaseCounter
}

// mountPassthrough mounts a world's bucket in this process with
// passthrough on; the test's cleanup unmounts it.
func mountPassthrough(t *testing.T, w *testworld.World) *passthroughMount {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("FUSE passthrough needs root (scripts/test.sh runs as root)")
	}
	c, err := cache.New(cache.Options{Dir: t.TempDir(), Budget: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{Remote: w.GCS, Cache: c, Passthrough: true, UID: 0, GID: 0,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := newReleaseCounter()
	f.hooks.Store(&testHooks{releaseDone: rc.add})
	srv, err := f.Mount(dir, MountOptions{FsName: "jitfs-test", testFence: true})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		c.Close()
	})
	return &passthroughMount{dir: dir, fs: f, releases: rc}
}

func readAll(t *testing.T, f *os.File, want []byte, what string) {
	t.Helper()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: read %d bytes that differ from the object's %d", what, len(got), len(want))
	}
}

// TestPassthroughOpenDuringCachedRelease replays the race behind the EIO
// opens renders saw: a cached-mode handle of a file that became complete
// is being released while a new open of the same inode gets passthrough.
// The cached handle never took a backing reference; if its release drops
// one anyway (go-fuse v2.12.1), the new open's backing id is closed under
// it, and the next open registers a second backing file for an inode the
// kernel already passes through to the first, which the kernel refuses
// with EIO. The hooks hold the release inside that window every time.
func TestPassthroughOpenDuringCachedRelease(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	want := w.PutRandom("tex/wood.png", 300<<10)
	m := mountPassthrough(t, w)
	path := filepath.Join(m.dir, "tex/wood.png")

	// A: a cold open is a cached-mode handle; reading it whole makes the
	// file complete in the cache, so the next open qualifies for
	// passthrough.
	a, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, a, want, "cold open")

	released := make(chan struct{})
	granted := make(chan struct{})
	var grantOnce, releaseOnce sync.Once
	m.fs.hooks.Store(&testHooks{
		releaseDone: m.releases.add,
		cachedReleased: func() {
			releaseOnce.Do(func() {
				close(released)
				// Hold the release until the next open has been handed
				// its backing fd (go-fuse holds its backing lock while it
				// takes the reference, so the release's own backing step
				// comes after it).
				select {
				case <-granted:
				case <-time.After(holdBound):
				}
			})
		},
		passthroughGranted: func() { grantOnce.Do(func() { close(granted) }) },
	})
	// close returns once the kernel has flushed; it sends RELEASE on its own.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-time.After(holdBound):
		t.Fatal("the cached handle's release never reached the daemon")
	}

	// B opens inside the window and is given passthrough.
	b, err := os.Open(path)
	if err != nil {
		t.Fatalf("open during a cached handle's release: %v", err)
	}
	defer b.Close()
	m.releases.waitFor(t, 1) // A's release has finished, backing step included
	readAll(t, b, want, "passthrough open made during the release")

	// C opens while B is open: it must share B's backing id.
	c, err := os.Open(path)
	if err != nil {
		t.Fatalf("second open after the release (the backing id was dropped under the first): %v", err)
	}
	defer c.Close()
	readAll(t, c, want, "second open")
	if n := m.fs.Stats.PassthroughOpens.Load(); n != 1 {
		t.Errorf("backing fds handed to go-fuse: %d, want 1 (B registers it, C shares it)", n)
	}
}

// TestConcurrentOpensAsFilesComplete opens, reads and closes files from
// many goroutines while the files go from cold to complete, with every
// GCS request delayed, so cached-mode releases and passthrough opens of one
// inode interleave as they do when several renderers of a node start on
// the same textures. Every open and every byte must succeed.
func TestConcurrentOpensAsFilesComplete(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	w.Proxy.StallMedia.Store(int64(2 * time.Millisecond))
	const files, readers, rounds = 12, 8, 6
	want := make([][]byte, files)
	for i := range want {
		want[i] = w.PutRandom(filepath.Join("tex", string(rune('a'+i))+".png"), 96<<10+i*4096)
	}
	m := mountPassthrough(t, w)

	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for round := 0; round < rounds; round++ {
				for i := 0; i < files; i++ {
					k := (i + r) % files
					p := filepath.Join(m.dir, "tex", string(rune('a'+k))+".png")
					got, err := os.ReadFile(p)
					if err == nil && !bytes.Equal(got, want[k]) {
						err = io.ErrUnexpectedEOF
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}
		}(r)
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d file reads failed; first: %v", n, files*readers*rounds, firstErr.Load())
	}
	if m.fs.Stats.PassthroughOpens.Load() == 0 {
		t.Error("no open got passthrough: the test did not exercise the mixed-mode path")
	}
}

// TestPassthroughRightAfterColdFill: a file read whole cold and closed is
// handed out for passthrough at its very next open. Every byte has
// arrived by then (the reader read them all); what may remain is writing
// the last ranges and the whole-object check, and the open waits for
// that rather than serving the whole life of the new handle through the
// daemon.
func TestPassthroughRightAfterColdFill(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	want := w.PutRandom("cache/big.bin", 24<<20+4321)
	m := mountPassthrough(t, w)
	path := filepath.Join(m.dir, "cache/big.bin")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, f, want, "cold read")
	f.Close()
	// close() does not wait for the daemon to hear RELEASE; until it does,
	// the cold open still counts as a cached-mode open of the inode, and
	// the kernel refuses passthrough beside one (a reopen racing the
	// release is served through the daemon, correctly but slower).
	m.releases.waitFor(t, 1)
	before := m.fs.Stats.PassthroughOpens.Load()
	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m.fs.Stats.PassthroughOpens.Load() == before {
		t.Fatal("the open right after a cold fill was not handed out for passthrough")
	}
	// Through the backing file, not the pages the cold read left on the
	// mount's own inode.
	testworld.DropPageCache(t, path)
	readAll(t, f, want, "read right after the fill")
}
