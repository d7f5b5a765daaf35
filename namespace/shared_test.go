package namespace_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/namespace"
)

// memStore is a namespace.Store in memory: the persistence contract's
// pure logic (the bbolt store is tested in internal/metastore).
type memStore struct {
	mu   sync.Mutex
	dirs map[string]namespace.Listing
}

func (s *memStore) LoadDir(dir string) (namespace.Listing, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.dirs[dir]
	return l, ok
}

func (s *memStore) SaveDir(dir string, l namespace.Listing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirs[dir] = l
}

func (s *memStore) saved(dir string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.dirs[dir]
	return ok
}

// A second Namespace over the same Store (a restarted daemon) answers
// everything the first listed with no request, keeps the generations the
// first pinned although the bucket changed, and lists what it never saw.
func TestStoreServesListedDirectories(t *testing.T) {
	r := newFake()
	r.put("show/a/x", 1)
	r.put("show/a/y", 2)
	r.put("show/b/z", 3)
	st := &memStore{dirs: map[string]namespace.Listing{}}
	ctx := context.Background()
	ns1, err := namespace.New(namespace.Options{Remote: r, Prefix: "show/", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ns1.Lookup(ctx, "a/x"); err != nil {
		t.Fatal(err)
	}
	ns1.Close()
	if !st.saved("") || !st.saved("a") || st.saved("b") {
		t.Fatalf("stored listings: %v", st.dirs)
	}
	r.put("show/a/x", 7) // overwritten: the snapshot keeps generation 1
	lists, stats := r.counts()

	ns2, err := namespace.New(namespace.Options{Remote: r, Prefix: "show/", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Close()
	e, err := ns2.Lookup(ctx, "a/x")
	if err != nil || e.Attrs.Generation != 1 {
		t.Fatalf("a/x from the store: %+v, %v; want generation 1", e, err)
	}
	if _, err := ns2.Lookup(ctx, "a/absent"); err == nil {
		t.Fatal("an absent name in a stored listing was found")
	}
	l2, s2 := r.counts()
	if l2 != lists || s2 != stats {
		t.Fatalf("stored directories cost %d lists and %d stats", l2-lists, s2-stats)
	}
	if got := ns2.Stats.StoredListings.Load(); got != 2 {
		t.Fatalf("StoredListings %d, want 2", got)
	}
	// b was never listed: it is listed now.
	if _, err := ns2.Lookup(ctx, "b/z"); err != nil {
		t.Fatal(err)
	}
	if l3, _ := r.counts(); l3 != l2+1 {
		t.Fatalf("b: %d lists, want 1", l3-l2)
	}
}

// A stored listing older than the TTL is listed again.
func TestStoreRespectsTTL(t *testing.T) {
	r := newFake()
	r.put("x", 1)
	now := time.Unix(1000, 0)
	st := &memStore{dirs: map[string]namespace.Listing{"": {ListedAt: now.Add(-time.Hour)}}}
	ns, err := namespace.New(namespace.Options{Remote: r, TTL: time.Minute, Store: st, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if _, err := ns.Lookup(context.Background(), "x"); err != nil {
		t.Fatalf("x behind a stale stored listing: %v", err)
	}
}

// Jobs share a listing only when it began no earlier than the job.
func TestSharedListingsNeverOlderThanTheJob(t *testing.T) {
	r := newFake()
	for i := range 5 {
		r.put("d/f"+string(rune('a'+i)), 1)
	}
	clock := time.Unix(1000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tick := func() { mu.Lock(); clock = clock.Add(time.Second); mu.Unlock() }
	sh := namespace.NewSharedListings(r, 0, now)
	ctx := context.Background()
	list := func(jobStart time.Time) int {
		ns, err := namespace.New(namespace.Options{Remote: sh.Since(jobStart), PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		ents, err := ns.List(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	jobA := now()
	jobB := now() // starts with A
	if n := list(jobA); n != 5 {
		t.Fatalf("A: %d entries", n)
	}
	l1, _ := r.counts()
	if n := list(jobB); n != 5 {
		t.Fatalf("B: %d entries", n)
	}
	if l2, _ := r.counts(); l2 != l1 || sh.Reused.Load() != 2 {
		t.Fatalf("B, started with A, listed again (%d list requests, %d reused)", l2-l1, sh.Reused.Load())
	}
	tick()
	r.put("d/new", 1)
	jobC := now() // starts after A's listings
	if n := list(jobC); n != 6 {
		t.Fatalf("C, started after d/new was published, sees %d entries, want 6", n)
	}
}
