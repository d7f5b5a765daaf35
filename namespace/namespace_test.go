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

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/namespace"
)

// fakeRemote is an in-memory bucket for the namespace's pure logic: it
// pages listings like GCS (prefixes and objects of one delimiter level,
// sorted), counts requests, and can hold a listing after its first page.
type fakeRemote struct {
	mu      sync.Mutex
	objects map[string]gcs.Attrs
	lists   int
	stats   int
	// hold, when set, blocks every page after the first until closed.
	hold chan struct{}
	// failList makes listings fail.
	failList error
}

func newFake() *fakeRemote { return &fakeRemote{objects: map[string]gcs.Attrs{}} }

func (r *fakeRemote) put(name string, gen int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objects[name] = gcs.Attrs{Name: name, Generation: gen, Size: gen * 10}
}

func (r *fakeRemote) del(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.objects, name)
}

func (r *fakeRemote) counts() (lists, stats int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lists, r.stats
}

func (r *fakeRemote) Stat(ctx context.Context, name string) (gcs.Attrs, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats++
	a, ok := r.objects[name]
	if !ok {
		return gcs.Attrs{}, gcs.ErrNotFound
	}
	return a, nil
}

func (r *fakeRemote) ListPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error) {
	r.mu.Lock()
	r.lists++
	hold, fail := r.hold, r.failList
	type item struct {
		key   string
		isDir bool
		a     gcs.Attrs
	}
	seen := map[string]bool{}
	var items []item
	for name, a := range r.objects {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		rest := name[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p := prefix + rest[:i+1]
			if !seen[p] {
				seen[p] = true
				items = append(items, item{key: p, isDir: true})
			}
			continue
		}
		items = append(items, item{key: name, a: a})
	}
	r.mu.Unlock()
	if fail != nil {
		return gcs.Page{}, fail
	}
	if token != "" && hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return gcs.Page{}, ctx.Err()
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	start := 0
	if token != "" {
		start = sort.Search(len(items), func(i int) bool { return items[i].key >= token })
	}
	var p gcs.Page
	end := min(start+pageSize, len(items))
	for _, it := range items[start:end] {
		if it.isDir {
			p.Prefixes = append(p.Prefixes, it.key)
		} else {
			p.Objects = append(p.Objects, it.a)
		}
	}
	if end < len(items) {
		p.Next = items[end].key
	}
	return p, nil
}

func newNS(t *testing.T, r namespace.Remote, opts namespace.Options) *namespace.Namespace {
	t.Helper()
	opts.Remote = r
	ns, err := namespace.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	return ns
}

func names(ents []namespace.Entry) string {
	var s []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir {
			n += "/"
		}
		s = append(s, n)
	}
	return strings.Join(s, " ")
}

// TestListingAnswersLookups: one listing per directory answers every name
// in it, absent names included, and the merge keeps the directory kinds.
func TestListingAnswersLookups(t *testing.T) {
	r := newFake()
	r.put("show/shot/a.exr", 1)
	r.put("show/shot/b.exr", 2)
	r.put("show/shot/tex/wood.tx", 3)
	ns := newNS(t, r, namespace.Options{Prefix: "show/"})
	ctx := context.Background()

	ents, err := ns.List(ctx, "shot")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ents); got != "a.exr b.exr tex/" {
		t.Fatalf("listing of shot: %q", got)
	}
	for _, p := range []string{"shot/a.exr", "shot/b.exr", "shot/tex", "shot/missing.exr"} {
		e, err := ns.Lookup(ctx, p)
		if p == "shot/missing.exr" {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s: %v, want not exist", p, err)
			}
			continue
		}
		if err != nil || e.Path != p {
			t.Fatalf("%s: %+v %v", p, e, err)
		}
	}
	lists, stats := r.counts()
	// The root and shot/ are listed once each; nothing is asked per name.
	if lists != 2 || stats != 0 {
		t.Fatalf("%d list and %d stat requests, want 2 and 0", lists, stats)
	}
	if _, err := ns.Lookup(ctx, "shot/a.exr/x"); !errors.Is(err, namespace.ErrNotDir) {
		t.Fatalf("a path through a file: %v", err)
	}
	if _, err := ns.Lookup(ctx, "shot/../shot/a.exr"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a path with ..: %v", err)
	}
	if ns.Stats.NegativeLookups.Load() != 1 {
		t.Fatalf("negative lookups %d, want 1", ns.Stats.NegativeLookups.Load())
	}
}

// TestGenerationsArePinned: without a TTL, the generation first seen is
// the one every later lookup and listing returns, whatever the bucket does.
func TestGenerationsArePinned(t *testing.T) {
	r := newFake()
	r.put("a.exr", 1)
	ns := newNS(t, r, namespace.Options{})
	ctx := context.Background()
	if _, err := ns.List(ctx, ""); err != nil { // the whole snapshot of the root
		t.Fatal(err)
	}
	e1, err := ns.Lookup(ctx, "a.exr")
	if err != nil || e1.Attrs.Generation != 1 {
		t.Fatalf("first lookup: %+v %v", e1, err)
	}
	r.put("a.exr", 2)
	r.put("b.exr", 5)
	e2, err := ns.Lookup(ctx, "a.exr")
	if err != nil || e2.Attrs.Generation != 1 || e2.Ino != e1.Ino {
		t.Fatalf("after an overwrite: %+v %v, want generation 1, inode %d", e2, err, e1.Ino)
	}
	// Published after the snapshot's listing: not in it.
	if _, err := ns.Lookup(ctx, "b.exr"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an object published after the listing: %v", err)
	}
}

// TestTTLRelists: past the TTL a directory is listed again; a new
// generation keeps the path's inode number, a deleted name disappears.
func TestTTLRelists(t *testing.T) {
	r := newFake()
	r.put("d/a.exr", 1)
	r.put("d/gone.exr", 1)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ns := newNS(t, r, namespace.Options{TTL: time.Minute, Now: clock})
	ctx := context.Background()
	e1, err := ns.Lookup(ctx, "d/a.exr")
	if err != nil {
		t.Fatal(err)
	}
	r.put("d/a.exr", 2)
	r.del("d/gone.exr")
	if e, _ := ns.Lookup(ctx, "d/a.exr"); e.Attrs.Generation != 1 {
		t.Fatalf("within the TTL: generation %d, want 1", e.Attrs.Generation)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	// The first lookup past the TTL starts the re-list; List waits for it.
	ents, err := ns.List(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ents); got != "a.exr" {
		t.Fatalf("re-listed d: %q", got)
	}
	e2, err := ns.Lookup(ctx, "d/a.exr")
	if err != nil || e2.Attrs.Generation != 2 || e2.Ino != e1.Ino {
		t.Fatalf("after the TTL: %+v %v, want generation 2 on inode %d", e2, err, e1.Ino)
	}
}

// TestLookupWhileListing: a name of a directory whose listing is held
// after its first page is answered directly (one-item list plus stat),
// absent names are remembered, and the finished listing keeps the pin.
func TestLookupWhileListing(t *testing.T) {
	r := newFake()
	for i := 0; i < 10; i++ {
		r.put(fmt.Sprintf("seq/f.%04d.exr", i), 1)
	}
	r.hold = make(chan struct{})
	ns := newNS(t, r, namespace.Options{PageSize: 3})
	ctx := context.Background()
	e, err := ns.Lookup(ctx, "seq/f.0008.exr")
	if err != nil || e.Attrs.Generation != 1 {
		t.Fatalf("direct lookup: %+v %v", e, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := ns.Lookup(ctx, "seq/nope.exr"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("absent name while listing: %v", err)
		}
	}
	if ns.Stats.DirectLookups.Load() != 2 {
		t.Fatalf("direct lookups %d, want 2 (the second absent lookup is answered from the negative cache)", ns.Stats.DirectLookups.Load())
	}
	r.put("seq/f.0008.exr", 7) // must not change the pin
	close(r.hold)
	ents, err := ns.List(ctx, "seq")
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 10 {
		t.Fatalf("listing: %q", names(ents))
	}
	if e2, _ := ns.Lookup(ctx, "seq/f.0008.exr"); e2.Attrs.Generation != 1 || e2.Ino != e.Ino {
		t.Fatalf("after the listing: %+v, want the direct lookup's pin", e2)
	}
}

// TestWaitIsBoundedByTheCaller: a caller whose context ends stops waiting
// with its context's cause; the listing goes on for the next caller.
func TestWaitIsBoundedByTheCaller(t *testing.T) {
	r := newFake()
	for i := 0; i < 5; i++ {
		r.put(fmt.Sprintf("d/%d", i), 1)
	}
	r.hold = make(chan struct{})
	ns := newNS(t, r, namespace.Options{PageSize: 2})
	cause := errors.New("op deadline")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if _, err := ns.List(ctx, "d"); !errors.Is(err, cause) {
		t.Fatalf("a cancelled wait: %v, want its cause", err)
	}
	close(r.hold)
	ents, err := ns.List(context.Background(), "d")
	if err != nil || len(ents) != 5 {
		t.Fatalf("the next caller: %q %v", names(ents), err)
	}
	if lists, _ := r.counts(); lists != 1+3 { // the root, then d/'s three pages
		t.Fatalf("%d list requests, want 4: the listing was not restarted", lists)
	}
}

// TestListErrorIsRetried: a failed listing is reported to its callers and
// retried by the next one.
func TestListErrorIsRetried(t *testing.T) {
	r := newFake()
	r.put("a", 1)
	r.failList = errors.New("link down")
	ns := newNS(t, r, namespace.Options{})
	ctx := context.Background()
	if _, err := ns.Lookup(ctx, "a"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lookup with the listing failing: %v, want the listing's error", err)
	}
	r.mu.Lock()
	r.failList = nil
	r.mu.Unlock()
	if _, err := ns.Lookup(ctx, "a"); err != nil {
		t.Fatalf("lookup after the link came back: %v", err)
	}
}

// TestPrefixWinsOverObject: an object "a" beside objects "a/…" is one
// directory a.
func TestPrefixWinsOverObject(t *testing.T) {
	r := newFake()
	r.put("a", 1)
	r.put("a/b", 1)
	ns := newNS(t, r, namespace.Options{})
	ctx := context.Background()
	e, err := ns.Lookup(ctx, "a")
	if err != nil || !e.IsDir {
		t.Fatalf("a: %+v %v, want the directory", e, err)
	}
	ents, err := ns.List(ctx, "")
	if err != nil || names(ents) != "a/" {
		t.Fatalf("root: %q %v", names(ents), err)
	}
}

// TestAgainstGCSAPI runs the namespace over the GCS client and the
// emulator: listing pages, direct lookups and pins as production sees them.
func TestAgainstGCSAPI(t *testing.T) {
	w := testworld.New(t, testworld.Options{Versioning: true})
	for i := 0; i < 25; i++ {
		w.PutRandom(fmt.Sprintf("show/tex/t%02d.tx", i), 100+i)
	}
	w.PutRandom("show/scene.blend", 1000)
	ns := newNS(t, w.GCS, namespace.Options{Prefix: "show", PageSize: 10})
	ctx := context.Background()
	e, err := ns.Lookup(ctx, "scene.blend")
	if err != nil || e.Attrs.Size != 1000 || e.Attrs.Generation == 0 {
		t.Fatalf("scene.blend: %+v %v", e, err)
	}
	w.PutRandom("show/scene.blend", 2000)
	if e2, _ := ns.Lookup(ctx, "scene.blend"); e2.Attrs.Generation != e.Attrs.Generation {
		t.Fatal("an overwritten object was re-pinned")
	}
	ents, err := ns.List(ctx, "tex")
	if err != nil || len(ents) != 25 {
		t.Fatalf("tex: %d entries, %v", len(ents), err)
	}
	lists := w.GCS.Stats.Lists.Load()
	for _, en := range ents {
		if _, err := ns.Lookup(ctx, en.Path); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ns.Lookup(ctx, "tex/none.tx"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if d := w.GCS.Stats.Lists.Load() - lists; d != 0 {
		t.Fatalf("%d list requests for names of a listed directory", d)
	}
}
