package testworld

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/faultproxy"
)

// DefaultBucket is the bucket a World creates when Options.Bucket is empty.
const DefaultBucket = "test-bucket"

// Options configures a World. The zero value is a bucket named
// DefaultBucket without versioning and a client with gcs's defaults.
type Options struct {
	// Bucket is created empty in the emulator and addressed by World.GCS.
	Bucket string
	// Versioning keeps overwritten generations readable (tests of
	// generation pinning need it).
	Versioning bool
	// Client is the template for World.GCS: retry and timeout settings are
	// taken from it; Bucket and Endpoint are always the world's own.
	Client gcs.Options
}

// World is an emulator behind a fault proxy, and a client of the proxy.
type World struct {
	Bucket string
	Emu    *emulator.Server
	Proxy  *faultproxy.Proxy
	GCS    *gcs.Client
}

// New starts a World. It fails the test on any error and registers cleanups
// that close the client, then the proxy, then the emulator.
func New(t testing.TB, opts Options) *World {
	t.Helper()
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	emu, err := emulator.Start(emulator.Options{Bucket: opts.Bucket, Versioning: opts.Versioning})
	if err != nil {
		t.Fatalf("testworld: %v", err)
	}
	t.Cleanup(emu.Stop)
	p, err := faultproxy.Start(emu.Addr())
	if err != nil {
		t.Fatalf("testworld: start fault proxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	w := &World{Bucket: opts.Bucket, Emu: emu, Proxy: p}
	copts := opts.Client
	copts.Bucket = opts.Bucket
	w.GCS = w.NewClient(t, copts)
	return w
}

// NewClient returns another client of the proxy (for another bucket, or
// other retry settings), closed at cleanup. opts.Endpoint is overwritten.
func (w *World) NewClient(t testing.TB, opts gcs.Options) *gcs.Client {
	t.Helper()
	opts.Endpoint = w.Proxy.Addr()
	c, err := gcs.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("testworld: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Put creates or overwrites an object in the world's bucket, giving it a
// new generation. It goes to the emulator directly, so the proxy's counters
// see only what the code under test does.
func (w *World) Put(name string, data []byte) {
	w.Emu.Put(w.Bucket, name, data)
}

// PutRandom stores size bytes of RandBytes(name, size) and returns them.
func (w *World) PutRandom(name string, size int) []byte {
	b := RandBytes(name, size)
	w.Put(name, b)
	return b
}

// Stat returns the live generation of name through the world's client,
// failing the test if it cannot. It counts as one stat at the proxy.
func (w *World) Stat(t testing.TB, name string) gcs.Attrs {
	t.Helper()
	a, err := w.GCS.Stat(context.Background(), name)
	if err != nil {
		t.Fatalf("testworld: %v", err)
	}
	return a
}

// RandBytes returns size deterministic pseudo-random bytes that depend on
// both seed and size.
func RandBytes(seed string, size int) []byte {
	h := fnv.New64a()
	h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(size)))
	b := make([]byte, size)
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := i; j < min(i+8, len(b)); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

// DropPageCache drops the kernel's cached pages of a file (in a mount, so
// the next read reaches the daemon, or its backing file).
func DropPageCache(t testing.TB, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// ClosedAddr is a loopback address nothing listens on (one that was free
// a moment ago): a server that is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// WaitFor polls cond until it holds: tests wait on a condition, never on a
// fixed sleep that a loaded machine stretches. The minute only guards a
// hung test.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after a minute waiting for %s", what)
		}
	}
}

// PutDeepTree stores a show's tree of small objects under prefix: 20 shots
// of 50 frames five levels deep, and 10 characters of 20 textures, the
// tree the listing-ahead tests and benchmarks walk.
func (w *World) PutDeepTree(prefix string) {
	for s := 0; s < 20; s++ {
		for f := 0; f < 50; f++ {
			w.Put(fmt.Sprintf("%sseq/sh%02d/comp/v001/exr/f.%04d.exr", prefix, s, 1001+f), []byte("x"))
		}
	}
	for c := 0; c < 10; c++ {
		for f := 0; f < 20; f++ {
			w.Put(fmt.Sprintf("%sassets/chars/c%02d/tex/t%02d.tx", prefix, c, f), []byte("x"))
		}
	}
}
