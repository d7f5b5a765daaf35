package cache_test

import (
	"context"
	"testing"

	"github.com/jitfs/jitfs/cache"
)

// usageOf returns the counters of one tracked prefix.
func usageOf(t *testing.T, c *cache.Cache, prefix string) cache.PrefixUsage {
	t.Helper()
	u, _ := c.Usage()
	for _, p := range u {
		if p.Bucket == bucket && p.Prefix == prefix {
			return p
		}
	}
	t.Fatalf("prefix %q is not tracked: %+v", prefix, u)
	return cache.PrefixUsage{}
}

// TestUsageByPrefix: each tracked prefix counts exactly the bytes the cache
// holds of the objects under it, whether it was tracked before or after
// they were read; a restarted cache counts them again from the journals
// without any object being opened; evicted objects leave the counters.
func TestUsageByPrefix(t *testing.T) {
	e := newEnv(t)
	_, a := e.put(t, "show/a.tex", 100_000)
	_, b := e.put(t, "show/sub/b.tex", 200_000)
	_, lib := e.put(t, "lib/c.blend", 3<<20)
	dir := t.TempDir()
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	c.TrackPrefix(bucket, "show/")
	for _, m := range []cache.Meta{a, b, lib} {
		h, err := c.Open(m, e.GCS)
		if err != nil {
			t.Fatal(err)
		}
		readWhole(t, h, int(m.Size))
		h.Close()
	}
	// Fills hand readers their bytes before writing them, and count them
	// in the cache's totals a moment after: wait for both.
	eventually(t, "the reads' bytes on disk and counted", func() bool {
		used, _ := c.Used()
		return resident(c, a, b, lib) && used == c.ResidentBytes(a)+c.ResidentBytes(b)+c.ResidentBytes(lib)
	})
	c.TrackPrefix(bucket, "lib/")
	c.TrackPrefix(bucket, "")
	c.TrackPrefix(bucket, "show/") // twice is once
	eventually(t, "the cache to have indexed its start", func() bool { _, ok := c.Usage(); return ok })
	show, libU, all := usageOf(t, c, "show/"), usageOf(t, c, "lib/"), usageOf(t, c, "")
	wantShow := c.ResidentBytes(a) + c.ResidentBytes(b)
	if show.Bytes != wantShow || show.Objects != 2 || show.Bytes < a.Size+b.Size {
		t.Fatalf("show/: %d bytes in %d objects, want %d in 2", show.Bytes, show.Objects, wantShow)
	}
	if libU.Bytes != c.ResidentBytes(lib) || libU.Objects != 1 || libU.Bytes < lib.Size {
		t.Fatalf("lib/ tracked after its read: %d bytes in %d objects, want %d in 1", libU.Bytes, libU.Objects, c.ResidentBytes(lib))
	}
	used, _ := c.Used()
	if all.Bytes != used || all.Objects != 3 {
		t.Fatalf("the whole bucket: %d bytes in %d objects; the cache uses %d in 3", all.Bytes, all.Objects, used)
	}
	if u, _ := c.Usage(); len(u) != 3 {
		t.Fatalf("%d prefixes tracked, want 3: %+v", len(u), u)
	}
	c.UntrackPrefix(bucket, "")
	c.Close()

	// Restarted: nothing opened, the counters come from the journals.
	c2 := newCache(t, dir, 1<<30)
	c2.TrackPrefix(bucket, "show/")
	eventually(t, "the restarted cache to name what it found", func() bool { _, ok := c2.Usage(); return ok })
	if got := usageOf(t, c2, "show/"); got.Bytes != show.Bytes || got.Objects != 2 {
		t.Fatalf("show/ after a restart: %d bytes in %d objects, want %d in 2", got.Bytes, got.Objects, show.Bytes)
	}
	c2.Close()

	// A budget far below what is cached evicts every object at start.
	c3 := newCache(t, dir, 1)
	c3.TrackPrefix(bucket, "show/")
	eventually(t, "eviction to empty the cache", func() bool { used, _ := c3.Used(); return used == 0 })
	eventually(t, "naming to end", func() bool { _, ok := c3.Usage(); return ok })
	if got := usageOf(t, c3, "show/"); got.Bytes != 0 || got.Objects != 0 {
		t.Fatalf("show/ after eviction: %d bytes in %d objects, want none", got.Bytes, got.Objects)
	}
	// A read after the eviction is counted again.
	h, err := c3.Open(a, e.GCS)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := h.ReadAt(context.Background(), buf, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the read's bytes on disk", func() bool { return resident(c3, a) })
	// The object's bytes move first, the counters a moment after (account
	// runs once the object's lock is released): wait for them.
	eventually(t, "the read's bytes counted under show/", func() bool {
		got := usageOf(t, c3, "show/")
		return got.Bytes == c3.ResidentBytes(a) && got.Objects == 1
	})
	h.Close()
}

// resident reports whether the cache holds every byte of each object.
func resident(c *cache.Cache, ms ...cache.Meta) bool {
	for _, m := range ms {
		if c.ResidentBytes(m) < m.Size {
			return false
		}
	}
	return true
}
