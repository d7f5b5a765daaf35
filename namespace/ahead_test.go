package namespace_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/namespace"
)

// walkAll lists every directory of ns, depth first, and describes each
// name with its kind and pinned generation: two namespaces of one bucket
// state agree on it exactly.
func walkAll(t *testing.T, ns *namespace.Namespace) []string {
	t.Helper()
	var out []string
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := ns.List(context.Background(), dir)
		if err != nil {
			t.Fatalf("list %q: %v", dir, err)
		}
		for _, e := range ents {
			if e.IsDir {
				out = append(out, e.Path+"/")
				walk(e.Path)
				continue
			}
			out = append(out, fmt.Sprintf("%s gen=%d size=%d", e.Path, e.Attrs.Generation, e.Attrs.Size))
		}
	}
	walk("")
	sort.Strings(out)
	return out
}

// TestListAheadDeepLookup: a path five directories deep in a cold
// namespace costs one list request at the bucket, and every directory on
// the way is then complete: listing each, and looking up names absent
// from them, costs nothing more. The directories are kept in the Store
// like any listing, so a restarted namespace answers with no request.
func TestListAheadDeepLookup(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	w.PutRandom("show/a/b/c/d/e/file.exr", 100)
	w.PutRandom("show/a/b/c/d/e/other.exr", 50)
	w.PutRandom("show/a/b/side.txt", 10)
	w.PutRandom("show/a/x/y.txt", 10)
	w.PutRandom("show/z.txt", 10)
	st := &memStore{dirs: map[string]namespace.Listing{}}
	ns := newNS(t, w.GCS, namespace.Options{Prefix: "show", ListAhead: namespace.DefaultListAhead, Store: st})
	ctx := context.Background()
	before := w.Proxy.Lists.Load()
	e, err := ns.Lookup(ctx, "a/b/c/d/e/file.exr")
	if err != nil || e.IsDir || e.Attrs.Size != 100 {
		t.Fatalf("deep lookup: %+v %v", e, err)
	}
	if n := w.Proxy.Lists.Load() - before; n != 1 {
		t.Fatalf("a path five directories deep cost %d list requests, want 1", n)
	}
	for _, p := range []string{"a/b/c/d/e/none", "a/b/c/none", "a/x/none", "none"} {
		if _, err := ns.Lookup(ctx, p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: %v, want not exist", p, err)
		}
	}
	want := []string{"a/", "a/b/", "a/b/c/", "a/b/c/d/", "a/b/c/d/e/",
		"a/b/c/d/e/file.exr", "a/b/c/d/e/other.exr", "a/b/side.txt", "a/x/", "a/x/y.txt", "z.txt"}
	got := walkAll(t, ns)
	for i := range got {
		got[i], _, _ = strings.Cut(got[i], " ")
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the tree:\n%q\nwant\n%q", got, want)
	}
	if n := w.Proxy.Lists.Load() - before; n != 1 {
		t.Fatalf("the whole walk cost %d list requests, want 1", n)
	}
	if s := &ns.Stats; s.AheadPages.Load() != 1 || s.AheadDirs.Load() != 6 || s.AheadUsed.Load() != 6 || s.AheadFallbacks.Load() != 0 || s.AheadWasted.Load() != 0 {
		t.Fatalf("stats: %d pages, %d dirs ahead, %d used, %d fallbacks, %d wasted; want 1, 6, 6, 0, 0",
			s.AheadPages.Load(), s.AheadDirs.Load(), s.AheadUsed.Load(), s.AheadFallbacks.Load(), s.AheadWasted.Load())
	}
	if len(st.dirs) != 7 {
		t.Fatalf("%d listings stored, want the root and its 6 directories", len(st.dirs))
	}
	again := newNS(t, w.GCS, namespace.Options{Prefix: "show", ListAhead: namespace.DefaultListAhead, Store: st})
	before = w.Proxy.Lists.Load()
	if e2, err := again.Lookup(ctx, "a/b/c/d/e/file.exr"); err != nil || e2.Attrs.Generation != e.Attrs.Generation {
		t.Fatalf("from the store: %+v %v", e2, err)
	}
	if n := w.Proxy.Lists.Load() - before; n != 0 {
		t.Fatalf("a namespace over the store made %d list requests, want 0", n)
	}
}

// TestListAheadOff: without ListAhead every directory on a path costs its
// own listing, as it always did; with a Remote that cannot list flat,
// ListAhead is refused.
func TestListAheadOff(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	w.PutRandom("a/b/c/d/e/file.exr", 100)
	ns := newNS(t, w.GCS, namespace.Options{})
	before := w.Proxy.Lists.Load()
	if _, err := ns.Lookup(context.Background(), "a/b/c/d/e/file.exr"); err != nil {
		t.Fatal(err)
	}
	if n := w.Proxy.Lists.Load() - before; n != 6 {
		t.Fatalf("%d list requests, want 6: the root and five directories", n)
	}
	if ns.Stats.AheadPages.Load() != 0 {
		t.Fatal("listed ahead with ListAhead 0")
	}
	if _, err := namespace.New(namespace.Options{Remote: newFake(), ListAhead: 10}); err == nil {
		t.Fatal("ListAhead over a Remote that cannot list flat was accepted")
	}
	if _, err := namespace.New(namespace.Options{Remote: w.GCS, ListAhead: -1}); err == nil {
		t.Fatal("a negative ListAhead was accepted")
	}
}

// oddTree is a bucket of directories made every way a bucket makes them:
// implicit, placeholders (empty or not), an object beside a prefix of the
// same name, and names no path can reach.
var oddTree = []string{
	"t/implicit/deep/er/f1", "t/implicit/deep/f2",
	"t/ph/", "t/ph/inside.txt", "t/empty/", "t/empty2/sub/",
	"t/same", "t/same/child",
	"t/dbl//hidden", "t/dbl/ok",
	"t/top.txt",
}

// bigTree returns n objects spread over nested directories, with
// placeholders among them.
func bigTree(n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		switch i % 5 {
		case 0:
			out = append(out, fmt.Sprintf("t/seq/f.%04d.exr", i))
		case 1:
			out = append(out, fmt.Sprintf("t/lib/g%d/tex/m%03d.tx", i%3, i))
		case 2:
			out = append(out, fmt.Sprintf("t/lib/g%d/", i%4))
		case 3:
			out = append(out, fmt.Sprintf("t/z%d/a/b/c.txt", i%7))
		default:
			out = append(out, fmt.Sprintf("t/m%03d", i))
		}
	}
	return out
}

// TestListAheadMatchesListing: whatever the bound, with trees smaller and
// larger than it and of every odd shape, a namespace listing ahead shows
// exactly what one listing directory by directory shows, the same
// generations pinned; lookups of absent names are absent.
func TestListAheadMatchesListing(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	for _, n := range append(oddTree, bigTree(60)...) {
		w.Put(n, []byte(n))
	}
	plain := walkAll(t, newNS(t, w.GCS, namespace.Options{PageSize: 7}))
	for _, bound := range []int{1, 5, 12, 40, namespace.DefaultListAhead} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			ns := newNS(t, w.GCS, namespace.Options{PageSize: 7, ListAhead: bound})
			ctx := context.Background()
			// A deep lookup first, so directories are completed ahead
			// before the walk lists them.
			if _, err := ns.Lookup(ctx, "t/lib/g1/tex/m001.tx"); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"t/ph/none", "t/empty/none", "t/dbl/hidden", "t/same/nope", "t/lib/g9"} {
				if _, err := ns.Lookup(ctx, p); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s: %v, want not exist", p, err)
				}
			}
			if e, err := ns.Lookup(ctx, "t/same"); err != nil || !e.IsDir {
				t.Fatalf("t/same: %+v %v, want the directory", e, err)
			}
			got := walkAll(t, ns)
			if strings.Join(got, "\n") != strings.Join(plain, "\n") {
				t.Fatalf("listing ahead (bound %d) shows\n%s\nlisting one by one shows\n%s", bound, strings.Join(got, "\n"), strings.Join(plain, "\n"))
			}
			if bound < 60 && ns.Stats.AheadFallbacks.Load() == 0 {
				t.Fatal("a tree past the bound never fell back to a delimiter listing")
			}
		})
	}
}

// TestListAheadSnapshot: directories completed ahead pin what they saw,
// as a listing of their own would: an object added or overwritten after
// the listing is not in the snapshot.
func TestListAheadSnapshot(t *testing.T) {
	w := testworld.New(t, testworld.Options{Versioning: true})
	w.PutRandom("a/b/c/file", 100)
	w.PutRandom("a/b/c/other", 10)
	ns := newNS(t, w.GCS, namespace.Options{ListAhead: namespace.DefaultListAhead})
	ctx := context.Background()
	e, err := ns.Lookup(ctx, "a/b/c/other")
	if err != nil {
		t.Fatal(err)
	}
	w.PutRandom("a/b/c/new", 10)
	w.PutRandom("a/b/c/file", 200)
	if _, err := ns.Lookup(ctx, "a/b/c/new"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an object added after the listing: %v, want not exist", err)
	}
	f, err := ns.Lookup(ctx, "a/b/c/file")
	if err != nil || f.Attrs.Size != 100 {
		t.Fatalf("an object overwritten after the listing: %+v %v, want the first generation", f, err)
	}
	ents, err := ns.List(ctx, "a/b/c")
	if err != nil || names(ents) != "file other" {
		t.Fatalf("a/b/c: %q %v", names(ents), err)
	}
	if e2, _ := ns.Lookup(ctx, "a/b/c/other"); e2.Ino != e.Ino {
		t.Fatal("an inode number changed")
	}
}

// TestListAheadSharedJobs: jobs on one node list ahead through
// SharedListings: jobs that start together share one flat listing, and a
// job never sees one that began before it.
func TestListAheadSharedJobs(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	w.PutRandom("a/b/c/file", 10)
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	sh := namespace.NewSharedListings(w.GCS, 0, now)
	ctx := context.Background()
	job := func(start time.Time, path string) (int64, error) {
		ns := newNS(t, sh.Since(start), namespace.Options{ListAhead: namespace.DefaultListAhead})
		before := w.Proxy.Lists.Load()
		_, err := ns.Lookup(ctx, path)
		return w.Proxy.Lists.Load() - before, err
	}
	start := now()
	if n, err := job(start, "a/b/c/file"); err != nil || n != 1 {
		t.Fatalf("job A: %d list requests, %v; want 1", n, err)
	}
	if n, err := job(start, "a/b/c/file"); err != nil || n != 0 || sh.Reused.Load() != 1 {
		t.Fatalf("job B, started with A: %d list requests (%d reused), %v; want A's listing", n, sh.Reused.Load(), err)
	}
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	w.PutRandom("a/b/c/new", 10)
	if n, err := job(now(), "a/b/c/new"); err != nil || n != 1 {
		t.Fatalf("job C, started after A's listing and a new object: %d list requests, %v; want its own listing", n, err)
	}
}

// TestListAheadPastTheBound: a flat listing that stops at the bound still
// names what it saw in the directories it stopped inside, so a lookup
// there costs no listing; a lookup of a name it had not reached lists
// that directory (flat, then with a delimiter past the bound), and the
// listed directory gets its own names from a delimiter listing. The tree
// is the same as listed one by one.
func TestListAheadPastTheBound(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	for i := 0; i < 5; i++ {
		w.Put(fmt.Sprintf("big/a/f%02d", i), []byte("a"))
	}
	for i := 0; i < 20; i++ {
		w.Put(fmt.Sprintf("big/b/c/d/f%02d", i), []byte("d"))
	}
	w.Put("z.txt", []byte("z"))
	ns := newNS(t, w.GCS, namespace.Options{PageSize: 10, ListAhead: 10, ListAheadSubdirs: -1})
	ctx := context.Background()
	before := w.Proxy.Lists.Load()
	if _, err := ns.Lookup(ctx, "big/b/c/d/f03"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.List(ctx, ""); err != nil { // waits for the root's own listing
		t.Fatal(err)
	}
	if n := w.Proxy.Lists.Load() - before; n != 2 {
		t.Fatalf("%d list requests, want 2: one flat page, then the root's delimiter listing", n)
	}
	if _, err := ns.Lookup(ctx, "big/b/c/d/f15"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.List(ctx, "big/b/c/d"); err != nil {
		t.Fatal(err)
	}
	// big/b/c/d listed flat (one page, the bound) and with a delimiter
	// (two pages). As in any directory larger than a page, the lookup did
	// not wait for the second page: it asked for its name directly, unless
	// the listing was done by the time it looked again.
	n, direct := w.Proxy.Lists.Load()-before, ns.Stats.DirectLookups.Load()
	if n != 5+direct || direct > 1 {
		t.Fatalf("%d list requests and %d direct lookups, want 5 and one for each direct lookup (0 or 1)", n, direct)
	}
	before += direct
	if _, err := ns.Lookup(ctx, "big/b/c/d/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an absent name: %v", err)
	}
	if n := w.Proxy.Lists.Load() - before; n != 5 {
		t.Fatalf("an absent name in a listed directory cost %d list requests", n-5)
	}
	if s := &ns.Stats; s.AheadFallbacks.Load() != 2 || s.AheadDirs.Load() != 1 {
		t.Fatalf("%d fallbacks and %d directories ahead, want 2 and 1 (big/a)", s.AheadFallbacks.Load(), s.AheadDirs.Load())
	}
	got := walkAll(t, ns)
	plain := walkAll(t, newNS(t, w.GCS, namespace.Options{PageSize: 10}))
	if strings.Join(got, "\n") != strings.Join(plain, "\n") {
		t.Fatalf("listing ahead shows\n%s\nlisting one by one shows\n%s", strings.Join(got, "\n"), strings.Join(plain, "\n"))
	}
}

// TestListAheadBackground: once a directory is listed, the first
// ListAheadSubdirs of its subdirectories nothing has listed are listed in
// the background, so a walker finds them listed; the rest wait for a
// caller.
func TestListAheadBackground(t *testing.T) {
	w := testworld.New(t, testworld.Options{})
	for d := 0; d < 6; d++ {
		for f := 0; f < 5; f++ {
			w.Put(fmt.Sprintf("d%d/f%d", d, f), []byte("x"))
		}
	}
	ns := newNS(t, w.GCS, namespace.Options{PageSize: 10, ListAhead: 10, ListAheadSubdirs: 3})
	ctx := context.Background()
	before := w.Proxy.Lists.Load()
	// The root's flat page holds d0 (complete) and d1; its delimiter
	// listing names d2 to d5.
	if _, err := ns.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// d1, d2 and d3 are listed in the background, one flat page each.
	testworld.WaitFor(t, "three background listings", func() bool {
		return ns.Stats.AheadBackground.Load() == 3 && w.Proxy.Lists.Load()-before == 2+3
	})
	for d := 1; d < 4; d++ {
		if ents, err := ns.List(ctx, fmt.Sprintf("d%d", d)); err != nil || len(ents) != 5 {
			t.Fatalf("d%d: %q %v", d, names(ents), err)
		}
	}
	if n := w.Proxy.Lists.Load() - before; n != 5 {
		t.Fatalf("directories listed in the background cost %d more list requests", n-5)
	}
	for d := 4; d < 6; d++ {
		if ents, err := ns.List(ctx, fmt.Sprintf("d%d", d)); err != nil || len(ents) != 5 {
			t.Fatalf("d%d: %q %v", d, names(ents), err)
		}
	}
	// d4 and d5, past the bound, are listed when asked: flat, and (a
	// caller waiting, in a tree larger than a page) with a delimiter at
	// once, which the flat page makes needless: cancelled, and counted
	// wasted whether or not it reached the bucket.
	if n, wasted := w.Proxy.Lists.Load()-before, ns.Stats.AheadWasted.Load(); n < 7 || n > 7+wasted || wasted > 2 {
		t.Fatalf("%d list requests (%d wasted), want 7 and at most the 2 wasted", n, wasted)
	}
	if s := &ns.Stats; s.AheadBackground.Load() != 3 || s.AheadBackgroundUsed.Load() != 3 {
		t.Fatalf("%d background listings, %d used; want 3 and 3", s.AheadBackground.Load(), s.AheadBackgroundUsed.Load())
	}
}
