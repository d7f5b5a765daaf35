package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/internal/wan"
)

// TestListAheadDeepStat: on a mount with the default --speculate, a stat
// of a path five directories deep costs one list request at the bucket,
// not one per directory, and a walk of the whole tree after it none more;
// the tree and the bytes are the bucket's. With metadata left out of
// --speculate, each directory on the path is listed on its own, as it
// always was.
func TestListAheadDeepStat(t *testing.T) {
	objects := []string{
		"show/a/b/c/d/e/file.exr", "show/a/b/c/d/e/other.exr", "show/a/b/c/side.txt",
		"show/a/b/empty/", "show/a/x/y.txt", "show/top.txt", "elsewhere/a/b/c/d/e/file.exr",
	}
	const deep = "a/b/c/d/e/file.exr"

	w := newWorld(t, false)
	want := map[string][]byte{}
	for i, o := range objects {
		if strings.HasSuffix(o, "/") {
			w.Put(o, nil)
			continue
		}
		want[o] = w.PutRandom(o, 1000+i)
	}
	d := w.mountForTest("show", "")
	lists := w.Proxy.Lists.Load()
	st, err := os.Stat(d.path(deep))
	if err != nil || st.Size() != int64(len(want["show/"+deep])) {
		t.Fatalf("stat %s: %v %v", deep, st, err)
	}
	if n := w.Proxy.Lists.Load() - lists; n != 1 {
		t.Fatalf("a stat five directories deep cost %d list requests, want 1", n)
	}
	var tree []string
	err = filepath.WalkDir(d.mnt, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.mnt, p)
		if e.IsDir() {
			rel += "/"
		}
		tree = append(tree, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(tree)
	wantTree := "./ a/ a/b/ a/b/c/ a/b/c/d/ a/b/c/d/e/ a/b/c/d/e/file.exr a/b/c/d/e/other.exr a/b/c/side.txt a/b/empty/ a/x/ a/x/y.txt top.txt"
	if got := strings.Join(tree, " "); got != wantTree {
		t.Fatalf("the tree through the mount:\n%s\nwant\n%s", got, wantTree)
	}
	if n := w.Proxy.Lists.Load() - lists; n != 1 {
		t.Fatalf("stat and a walk of the whole tree cost %d list requests, want 1", n)
	}
	mustEqualBytes(t, deep, mustRead(t, d.path(deep)), want["show/"+deep])
	if _, err := os.Stat(d.path("a/b/c/d/e/none.exr")); !os.IsNotExist(err) {
		t.Fatalf("an absent name: %v", err)
	}
	if n := w.Proxy.Lists.Load() - lists; n != 1 {
		t.Fatalf("an absent name in a directory listed ahead cost %d list requests", n-1)
	}
	d.Stop()

	// Off: the root and each of the five directories.
	d2 := w.mountForTest("show", "", "--speculate", "siblings,sequences,coopen")
	lists = w.Proxy.Lists.Load()
	if _, err := os.Stat(d2.path(deep)); err != nil {
		t.Fatal(err)
	}
	if n := w.Proxy.Lists.Load() - lists; n != 6 {
		t.Fatalf("metadata off: a stat five directories deep cost %d list requests, want 6", n)
	}
}

// TestListAheadStalledLink: a lookup waiting on a listing ahead over a
// stalled link fails with EIO once --op-timeout has passed, like any
// lookup, and succeeds once the link is back, with the right bytes.
func TestListAheadStalledLink(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("shots/sh010/comp/v001/plate.exr", 30_000)
	w.PutRandom("tex/wall.tx", 1000)
	d := w.mountForTest("", "", "--op-timeout", "2s", "--gcs-attempt-timeout", "1s")
	w.Proxy.StallAll.Store(true)
	if _, err := os.Stat(d.path("shots/sh010/comp/v001/plate.exr")); errnoOf(err) != syscall.EIO {
		t.Fatalf("stat over a stalled link: %v, want EIO", err)
	}
	if w.Proxy.Held.Load() == 0 {
		t.Fatal("the proxy held no request: the link was not stalled")
	}
	w.Proxy.StallAll.Store(false)
	// The failed listing may still be in a retry backoff: try until it
	// answers.
	waitFor(t, "the lookup to succeed once the link is back", time.Minute, func() bool {
		_, err := os.Stat(d.path("shots/sh010/comp/v001/plate.exr"))
		return err == nil
	})
	mustEqualBytes(t, "the file after the stall", mustRead(t, d.path("shots/sh010/comp/v001/plate.exr")), want)
	ents, err := os.ReadDir(d.path(""))
	if err != nil || len(ents) != 2 {
		t.Fatalf("the root after the stall: %v %v", ents, err)
	}
}

// BenchmarkListAheadMount: a cold mount over the bench's emulated link
// (20 ms round trips) stats a path six directories deep, or walks a tree
// of 1,200 objects in 130 directories (as find does), with metadata in
// --speculate and without. It reports the list requests each costs.
//
//	go test ./cmd/jitfs -run '^$' -bench ListAheadMount -benchtime 5x
func BenchmarkListAheadMount(b *testing.B) {
	w := testworld.New(b, testworld.Options{Bucket: testBucket})
	w.PutDeepTree("show/")
	link, err := wan.Start(w.Proxy.Addr(), wan.Link{RTT: wan.DefaultRTT}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { link.Close() })
	ops := map[string]func(mnt string) error{
		"stat": func(mnt string) error {
			_, err := os.Stat(filepath.Join(mnt, "seq/sh07/comp/v001/exr/f.1030.exr"))
			return err
		},
		"find": func(mnt string) error {
			return filepath.WalkDir(mnt, func(p string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					_, err = e.Info()
				}
				return err
			})
		},
	}
	for _, op := range []string{"stat", "find"} {
		for _, spec := range []string{"siblings,sequences,coopen", "siblings,sequences,coopen,metadata"} {
			name := "metadata=off"
			if strings.HasSuffix(spec, "metadata") {
				name = "metadata=on"
			}
			b.Run(op+"/"+name, func(b *testing.B) {
				var spent time.Duration
				var lists int64
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					mnt := filepath.Join(b.TempDir(), "mnt")
					if err := os.MkdirAll(mnt, 0o755); err != nil {
						b.Fatal(err)
					}
					args := []string{"mount", "gs://" + testBucket + "/show", mnt, "--cache-dir", filepath.Join(b.TempDir(), "cache"),
						"--endpoint", link.Addr(), "--cache-size", "1GiB", "--speculate", spec}
					d := testworld.StartDaemon(b, mnt, func() bool { return socketReady(mnt, args) }, args...)
					before := w.Proxy.Lists.Load()
					b.StartTimer()
					start := time.Now()
					err := ops[op](mnt)
					spent += time.Since(start)
					b.StopTimer()
					lists += w.Proxy.Lists.Load() - before
					d.Stop()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(lists)/float64(b.N), "lists/op")
				b.ReportMetric(spent.Seconds()*1000/float64(b.N), "ms/op")
			})
		}
	}
}
