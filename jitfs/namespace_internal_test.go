package jitfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/namespace"
)

// TestObjectBesideSameNamedPrefix checks the documented rule for an
// object "a" beside objects "a/…": the directory wins, whether the name is
// first looked up on its own or found by listing its parent, and the
// object "a" is not reachable through the mount.
func TestObjectBesideSameNamedPrefix(t *testing.T) {
	for _, first := range []string{"lookup", "readdir"} {
		t.Run(first, func(t *testing.T) {
			w := testworld.New(t, testworld.Options{})
			w.PutRandom("shot/a", 1000)
			want := w.PutRandom("shot/a/b", 2000)
			m := mountPassthrough(t, w)
			if first == "readdir" {
				ents, err := os.ReadDir(filepath.Join(m.dir, "shot"))
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) != 1 || ents[0].Name() != "a" || !ents[0].IsDir() {
					t.Fatalf("listing of shot/: %v, want one directory a", ents)
				}
			}
			fi, err := os.Stat(filepath.Join(m.dir, "shot/a"))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() {
				t.Fatalf("shot/a is %v, want the directory (the prefix wins over the object)", fi.Mode())
			}
			got, err := os.ReadFile(filepath.Join(m.dir, "shot/a/b"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatal("shot/a/b: wrong bytes")
			}
		})
	}
}

// TestForgottenInodesRelistNothing: the listing lives in the namespace,
// not in the kernel's inodes. After drop_caches makes the kernel forget
// every inode of a cached 2,000-file tree, reading the tree again makes no
// list, stat or read request.
func TestForgottenInodesRelistNothing(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	const dirs, perDir = 40, 50
	want := map[string][]byte{}
	for d := 0; d < dirs; d++ {
		for i := 0; i < perDir; i++ {
			name := fmt.Sprintf("show/seq%02d/sub/f.%04d.exr", d, i)
			want[strings.TrimPrefix(name, "show/")] = w.PutRandom(name, 512+d*perDir+i)
		}
	}
	m := mountPassthrough(t, w)
	root := filepath.Join(m.dir, "show")
	readTree := func() int {
		n := 0
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want[rel]) {
				return fmt.Errorf("%s: wrong bytes", rel)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := readTree(); n != dirs*perDir {
		t.Fatalf("read %d files, want %d", n, dirs*perDir)
	}
	nodes := len(m.fs.root.Children())
	if nodes == 0 {
		t.Fatal("the root has no child inodes after a walk")
	}
	// Every file was read whole, so every object is in the cache; nothing
	// below needs GCS unless the tree's listings were lost.
	lists, stats, reads := w.GCS.Stats.Lists.Load(), w.GCS.Stats.Stats.Load(), w.GCS.Stats.Reads.Load()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Fatalf("drop_caches: %v (the test runs as root)", err)
	}
	// The kernel sends FORGET for the inodes it dropped; go-fuse drops the
	// nodes as they arrive. Wait until the root's child is gone, dropping
	// again now and then in case something held a dentry the first time.
	// The bound only turns a kernel that never forgets into a clear
	// failure instead of a hung test run.
	start, again := time.Now(), time.Now().Add(time.Second)
	for ; len(m.fs.root.Children()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > holdBound {
			t.Fatalf("the kernel did not forget the tree's inodes within %v of drop_caches", holdBound)
		}
		if time.Now().After(again) {
			if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
				t.Fatal(err)
			}
			again = time.Now().Add(time.Second)
		}
	}

	if n := readTree(); n != dirs*perDir {
		t.Fatalf("read %d files after drop_caches, want %d", n, dirs*perDir)
	}
	if d := w.GCS.Stats.Lists.Load() - lists; d != 0 {
		t.Errorf("%d list requests re-reading a cached tree after the kernel forgot its inodes, want 0", d)
	}
	if d := w.GCS.Stats.Stats.Load() - stats; d != 0 {
		t.Errorf("%d stat requests re-reading a cached tree, want 0", d)
	}
	if d := w.GCS.Stats.Reads.Load() - reads; d != 0 {
		t.Errorf("%d read requests re-reading a cached tree, want 0", d)
	}
}

// TestResolveAndListDirAskTheNamespace: the prefetch engine's Resolve and
// the hook API's ListDir answer from the namespace without the kernel (so
// they work before any process has looked), and they pin what the mount
// then serves.
func TestResolveAndListDirAskTheNamespace(t *testing.T) {
	w := testworld.New(t, testworld.Options{Versioning: true})
	first := w.PutRandom("shot/tex/wood.1001.tx", 3000)
	w.PutRandom("shot/tex/wood.1002.tx", 3000)
	m := mountPassthrough(t, w)
	ctx := context.Background()
	meta, err := m.fs.Resolve(ctx, "shot/tex/wood.1001.tx")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.fs.root.Children()) != 0 {
		t.Fatal("Resolve went through the kernel: the root has child inodes")
	}
	if meta.Name != "shot/tex/wood.1001.tx" || meta.Size != 3000 || meta.Gen == 0 || meta.Bucket != w.Bucket {
		t.Fatalf("resolved %+v", meta)
	}
	// Overwritten after it was resolved: the mount serves the pinned bytes.
	w.PutRandom("shot/tex/wood.1001.tx", 4000)
	got, err := os.ReadFile(filepath.Join(m.dir, "shot/tex/wood.1001.tx"))
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("read after Resolve pinned the object: %d bytes, %v; want the resolved generation", len(got), err)
	}
	if _, err := m.fs.Resolve(ctx, "shot/tex"); !errors.Is(err, ErrNotFile) {
		t.Fatalf("Resolve of a directory: %v", err)
	}
	if _, err := m.fs.Resolve(ctx, "shot/tex/none.tx"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Resolve of a missing file: %v", err)
	}
	names, err := m.fs.ListDir(filepath.Join(m.dir, "shot", "tex"))
	if err != nil || strings.Join(names, " ") != "wood.1001.tx wood.1002.tx" {
		t.Fatalf("ListDir: %q %v", names, err)
	}
	if _, err := m.fs.ListDir(filepath.Dir(m.dir)); err == nil {
		t.Fatal("ListDir outside the mount succeeded")
	}
	if _, err := m.fs.ListDir(filepath.Join(m.dir, "shot/tex/wood.1001.tx")); err == nil {
		t.Fatal("ListDir of a file succeeded")
	}
}

// A mount over a shared Namespace with a prefix tells its open observer
// (the prefetch engine's frame learning) mount-relative paths.
func TestOpenObserverOnSharedNamespace(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	w.PutRandom("show/tex/a.tx", 100)
	c, err := cache.New(cache.Options{Dir: t.TempDir(), Budget: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ns, err := namespace.New(namespace.Options{Remote: w.GCS, Prefix: "show/"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	f, err := New(Options{Remote: w.GCS, Cache: c, Namespace: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 4)
	f.SetOpenObserver(func(rel string) { seen <- rel })
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := f.Mount(dir, MountOptions{FsName: "jitfs-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount()
	if _, err := os.ReadFile(filepath.Join(dir, "tex/a.tx")); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "tex/a.tx" {
		t.Fatalf("observer heard %q, want the mount-relative tex/a.tx", got)
	}
}
