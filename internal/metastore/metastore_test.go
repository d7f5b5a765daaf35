package metastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/namespace"
)

func open(t testing.TB, path string) (*Store, *testworld.Buffer) {
	t.Helper()
	logs := &testworld.Buffer{}
	s, err := Open(Options{Path: path, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func closeStore(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func flush(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 891011121, time.UTC)

// listing makes a listing of dir under source with n files whose
// generations are unique to (job, source, dir), so any listing served for
// the wrong key shows.
func listing(job, source, dir string, n int, seed int64) namespace.Listing {
	prefix := strings.TrimSuffix(source, "/") + "/"
	if dir != "" {
		prefix += dir + "/"
	}
	l := namespace.Listing{ListedAt: t0.Add(time.Duration(seed) * time.Second), Dirs: []string{"sub-" + job, "other"}}
	for i := range n {
		a := gcs.Attrs{
			Name:       fmt.Sprintf("%sfile-%04d.exr", prefix, i),
			Size:       int64(i) * 1000003,
			Generation: 1_700_000_000_000_000 + seed*100_000 + int64(i),
			Updated:    t0.Add(-time.Duration(i) * time.Millisecond),
		}
		if i%3 == 0 {
			a.CRC32C, a.HasCRC32C = uint32(i*2654435761), true
		}
		if i%5 == 0 {
			a.Metadata = map[string]string{"goog-reserved-file-mtime": fmt.Sprint(i), "shot": job}
		}
		if i%7 == 0 {
			a.Metadata = map[string]string{} // empty, not nil
		}
		l.Files = append(l.Files, a)
	}
	return l
}

// normalize is l as a store gives it back (times in UTC), in a copy: the
// store keeps l until its writer has written it.
func normalize(l namespace.Listing) namespace.Listing {
	l.ListedAt = l.ListedAt.UTC()
	l.Files = append([]gcs.Attrs(nil), l.Files...)
	for i := range l.Files {
		l.Files[i].Updated = l.Files[i].Updated.UTC()
	}
	return l
}

func TestRecordRoundTrip(t *testing.T) {
	for _, l := range []namespace.Listing{
		{},
		{ListedAt: time.Unix(-5, 3), Dirs: []string{""}},
		{Files: []gcs.Attrs{{Name: "a"}, {Name: "ab", CRC32C: 7}, {Name: "", Size: -1, Generation: -2, HasCRC32C: true}}},
		listing("j", "b/p/", "d/e", 100, 3),
	} {
		got, err := decodeListing("j", "k", encodeListing("j", "k", l))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, normalize(l)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, l)
		}
		if _, err := decodeListing("j", "k2", encodeListing("j", "k", l)); err == nil {
			t.Fatal("a record under another key passed its check")
		}
		if _, err := decodeListing("j2", "k", encodeListing("j", "k", l)); err == nil {
			t.Fatal("a record under another job passed its check")
		}
	}
	j := Job{ID: "job", Started: t0, Detached: t0.Add(time.Hour)}
	if got, err := decodeJob("job", encodeJob(j)); err != nil || got != j {
		t.Fatalf("job round trip: %+v, %v", got, err)
	}
	if _, err := decodeJob("job", encodeListing("job", "", namespace.Listing{})); err == nil {
		t.Fatal("a listing record passed for a job record")
	}
}

func TestRoundTrip(t *testing.T) {
	path := t.TempDir() + "/meta.db"
	s, _ := open(t, path)
	if ok, why := s.Rebuilt(); ok {
		t.Fatalf("fresh store reported rebuilt: %s", why)
	}
	jobs := []Job{{ID: "job-a", Started: t0}, {ID: "job-b", Started: t0.Add(time.Minute), Detached: t0.Add(time.Hour)}}
	want := map[[3]string]namespace.Listing{}
	for _, j := range jobs {
		if err := s.PutJob(j); err != nil {
			t.Fatal(err)
		}
		for _, src := range []string{"bucket/show1/", "bucket/show2/"} {
			ls := s.Listings(j.ID, src)
			for i, dir := range []string{"", "tex", "tex/wood"} {
				l := listing(j.ID, src, dir, 50*i, int64(len(want)))
				ls.SaveDir(dir, l)
				want[[3]string{j.ID, src, dir}] = l
			}
		}
	}
	flush(t, s)
	if s.Pending() != 0 || s.Dropped() != 0 {
		t.Fatalf("pending %d, dropped %d after Flush", s.Pending(), s.Dropped())
	}
	closeStore(t, s)

	s, _ = open(t, path)
	defer closeStore(t, s)
	if ok, why := s.Rebuilt(); ok {
		t.Fatalf("reopened store reported rebuilt: %s", why)
	}
	got, err := s.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, jobs) {
		t.Fatalf("Jobs = %+v, want %+v", got, jobs)
	}
	for k, l := range want {
		g, ok := s.Listings(k[0], k[1]).LoadDir(k[2])
		if !ok {
			t.Fatalf("%v: not found", k)
		}
		if !reflect.DeepEqual(g, normalize(l)) {
			t.Fatalf("%v: got %+v\nwant %+v", k, g, l)
		}
	}
	if _, ok := s.Listings("job-a", "bucket/show3/").LoadDir(""); ok {
		t.Fatal("a source never saved was found")
	}
	if _, ok := s.Listings("job-c", "bucket/show1/").LoadDir(""); ok {
		t.Fatal("a job never saved was found")
	}
}

// countingRemote is a bucket of fixed objects that counts requests.
type countingRemote struct {
	mu          sync.Mutex
	objects     []gcs.Attrs // sorted by name
	lists, stat int
}

func (r *countingRemote) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lists, r.stat
}

func (r *countingRemote) Stat(_ context.Context, name string) (gcs.Attrs, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stat++
	for _, a := range r.objects {
		if a.Name == name {
			return a, nil
		}
	}
	return gcs.Attrs{}, gcs.ErrNotFound
}

// ListPage answers every listing in one page.
func (r *countingRemote) ListPage(_ context.Context, prefix, _ string, _ int) (gcs.Page, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	var p gcs.Page
	for _, a := range r.objects {
		rest, ok := strings.CutPrefix(a.Name, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			if pre := prefix + rest[:i+1]; len(p.Prefixes) == 0 || p.Prefixes[len(p.Prefixes)-1] != pre {
				p.Prefixes = append(p.Prefixes, pre)
			}
			continue
		}
		p.Objects = append(p.Objects, a)
	}
	return p, nil
}

func TestNamespaceServesStoredListingsAfterRestart(t *testing.T) {
	remote := &countingRemote{}
	for _, n := range []string{"p/a.txt", "p/tex/b.exr", "p/tex/c.exr", "p/tex/wood/d.exr", "p/z/e"} {
		remote.objects = append(remote.objects, gcs.Attrs{Name: n, Size: int64(len(n)), Generation: int64(len(n)) * 11,
			Updated: t0, Metadata: map[string]string{"k": n}})
	}
	sort.Slice(remote.objects, func(i, j int) bool { return remote.objects[i].Name < remote.objects[j].Name })
	ctx := context.Background()
	path := t.TempDir() + "/meta.db"
	const source = "bucket/p/"

	// walkAll lists every directory and looks up every file.
	walkAll := func(ns *namespace.Namespace) map[string]namespace.Entry {
		t.Helper()
		seen := map[string]namespace.Entry{}
		var walkDir func(dir string)
		walkDir = func(dir string) {
			ents, err := ns.List(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				seen[e.Path] = e
				if e.IsDir {
					walkDir(e.Path)
				}
			}
		}
		walkDir("")
		for p, e := range seen {
			got, err := ns.Lookup(ctx, p)
			if err != nil || got.Attrs.Generation != e.Attrs.Generation || got.IsDir != e.IsDir {
				t.Fatalf("Lookup(%s) = %+v, %v; listed %+v", p, got, err, e)
			}
		}
		if _, err := ns.Lookup(ctx, "tex/missing.exr"); !errors.Is(err, namespace.ErrNotExist) {
			t.Fatalf("missing name: %v", err)
		}
		return seen
	}
	newNS := func(s *Store, job string) *namespace.Namespace {
		ns, err := namespace.New(namespace.Options{Remote: remote, Prefix: "p/", Store: s.Listings(job, source)})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	s, _ := open(t, path)
	if err := s.PutJob(Job{ID: "job1", Started: t0}); err != nil {
		t.Fatal(err)
	}
	ns := newNS(s, "job1")
	first := walkAll(ns)
	ns.Close()
	lists, stats := remote.counts()
	if lists != 4 || stats != 0 {
		t.Fatalf("first walk: %d lists, %d stats; want 4 and 0", lists, stats)
	}
	flush(t, s)
	closeStore(t, s)

	s, _ = open(t, path)
	defer closeStore(t, s)
	ns = newNS(s, "job1")
	defer ns.Close()
	again := walkAll(ns)
	if l, st := remote.counts(); l != lists || st != stats {
		t.Fatalf("after restart: %d lists, %d stats more; want none", l-lists, st-stats)
	}
	if ns.Stats.StoredListings.Load() != 4 {
		t.Fatalf("StoredListings = %d, want 4", ns.Stats.StoredListings.Load())
	}
	for p, e := range first {
		if g := again[p]; g.IsDir != e.IsDir || !reflect.DeepEqual(g.Attrs, e.Attrs) {
			t.Fatalf("%s: after restart %+v, before %+v", p, g, e)
		}
	}

	// Another job on the same source has its own snapshot: it lists.
	if err := s.PutJob(Job{ID: "job2", Started: t0}); err != nil {
		t.Fatal(err)
	}
	ns2 := newNS(s, "job2")
	defer ns2.Close()
	walkAll(ns2)
	if l, _ := remote.counts(); l != lists+4 {
		t.Fatalf("second job: %d lists, want 4", l-lists)
	}
}

func TestDeleteJob(t *testing.T) {
	path := t.TempDir() + "/meta.db"
	s, _ := open(t, path)
	defer closeStore(t, s)
	for _, id := range []string{"gone", "kept"} {
		if err := s.PutJob(Job{ID: id, Started: t0}); err != nil {
			t.Fatal(err)
		}
	}
	gone, kept := s.Listings("gone", "b/"), s.Listings("kept", "b/")
	for i := range 100 {
		dir := fmt.Sprint("d", i)
		gone.SaveDir(dir, listing("gone", "b/", dir, 10, int64(i)))
		kept.SaveDir(dir, listing("kept", "b/", dir, 10, int64(i)))
	}
	flush(t, s)
	// Queued before the delete (some may still be waiting), and after it
	// by a namespace that has not yet been told.
	for i := range 100 {
		dir := fmt.Sprint("late", i)
		gone.SaveDir(dir, listing("gone", "b/", dir, 10, int64(i)))
	}
	if err := s.DeleteJob("gone"); err != nil {
		t.Fatal(err)
	}
	gone.SaveDir("after", listing("gone", "b/", "after", 10, 1))
	flush(t, s)
	jobs, err := s.Jobs()
	if err != nil || len(jobs) != 1 || jobs[0].ID != "kept" {
		t.Fatalf("Jobs = %+v, %v", jobs, err)
	}
	for _, dir := range []string{"d0", "d99", "late0", "late99", "after"} {
		if _, ok := gone.LoadDir(dir); ok {
			t.Fatalf("deleted job's %s is still there", dir)
		}
	}
	if _, ok := kept.LoadDir("d99"); !ok {
		t.Fatal("the other job's listing went with it")
	}
	// The same ID attached again starts empty.
	if err := s.PutJob(Job{ID: "gone", Started: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	if _, ok := gone.LoadDir("late5"); ok {
		t.Fatal("a listing queued before DeleteJob came back")
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketListings).Bucket([]byte("gone")) != nil {
			return errors.New("the deleted job's listings bucket exists again")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDamagedRecords(t *testing.T) {
	path := t.TempDir() + "/meta.db"
	s, logs := open(t, path)
	for _, id := range []string{"a", "b"} {
		if err := s.PutJob(Job{ID: id, Started: t0}); err != nil {
			t.Fatal(err)
		}
	}
	la, lb := s.Listings("a", "src/"), s.Listings("b", "src/")
	la.SaveDir("x", listing("a", "src/", "x", 20, 1))
	la.SaveDir("y", listing("a", "src/", "y", 20, 2))
	lb.SaveDir("x", listing("b", "src/", "x", 20, 3))
	flush(t, s)

	// Damage one byte of a listing, and move another under a new key.
	err := s.db.Update(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bucketListings).Bucket([]byte("a"))
		v := append([]byte(nil), jb.Get([]byte("src/\x00x"))...)
		v[len(v)/2] ^= 0x40
		if err := jb.Put([]byte("src/\x00x"), v); err != nil {
			return err
		}
		moved := append([]byte(nil), tx.Bucket(bucketListings).Bucket([]byte("b")).Get([]byte("src/\x00x"))...)
		return jb.Put([]byte("src/\x00y"), moved)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"x", "y"} {
		if l, ok := la.LoadDir(dir); ok {
			t.Fatalf("damaged listing %s served: %+v", dir, l.Files[0])
		}
	}
	if !strings.Contains(logs.String(), "damaged listing dropped") {
		t.Fatalf("not logged:\n%s", logs)
	}
	flush(t, s)
	err = s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketListings).Bucket([]byte("a")).Stats().KeyN; n != 0 {
			return fmt.Errorf("%d damaged records left", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lb.LoadDir("x"); !ok {
		t.Fatal("the undamaged listing is gone")
	}

	// A damaged job record: left out of Jobs, deleted with its listings.
	la.SaveDir("z", listing("a", "src/", "z", 20, 4))
	flush(t, s)
	err = s.db.Update(func(tx *bolt.Tx) error {
		v := append([]byte(nil), tx.Bucket(bucketJobs).Get([]byte("a"))...)
		v[1] ^= 1
		return tx.Bucket(bucketJobs).Put([]byte("a"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := s.Jobs()
	if err != nil || len(jobs) != 1 || jobs[0].ID != "b" {
		t.Fatalf("Jobs = %+v, %v", jobs, err)
	}
	flush(t, s)
	if _, ok := la.LoadDir("z"); ok {
		t.Fatal("a listing of the job with the damaged record is still served")
	}

	// Damage found by the open checks is deleted there.
	lb.SaveDir("w", listing("b", "src/", "w", 20, 5))
	flush(t, s)
	err = s.db.Update(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bucketListings).Bucket([]byte("b"))
		v := append([]byte(nil), jb.Get([]byte("src/\x00w"))...)
		v[3] ^= 0xff
		return jb.Put([]byte("src/\x00w"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s, logs = open(t, path)
	defer closeStore(t, s)
	if ok, _ := s.Rebuilt(); ok {
		t.Fatal("one damaged record rebuilt the whole store")
	}
	if !strings.Contains(logs.String(), "dropping damaged records") {
		t.Fatalf("not logged:\n%s", logs)
	}
	lb = s.Listings("b", "src/")
	if _, ok := lb.LoadDir("w"); ok {
		t.Fatal("damaged listing served after reopen")
	}
	if _, ok := lb.LoadDir("x"); !ok {
		t.Fatal("undamaged listing lost at reopen")
	}
}

func TestUnknownFormatRebuilds(t *testing.T) {
	path := t.TempDir() + "/meta.db"
	s, _ := open(t, path)
	if err := s.PutJob(Job{ID: "a", Started: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, []byte("jitfs-metastore/99"))
	}); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s, logs := open(t, path)
	defer closeStore(t, s)
	assertRebuilt(t, s, path, logs)
}

func assertRebuilt(t *testing.T, s *Store, path string, logs *testworld.Buffer) {
	t.Helper()
	ok, why := s.Rebuilt()
	if !ok || why == "" {
		t.Fatalf("Rebuilt = %v, %q", ok, why)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("corrupt file not kept: %v", err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), path) {
		t.Fatalf("not logged with its path:\n%s", logs)
	}
	if jobs, err := s.Jobs(); err != nil || len(jobs) != 0 {
		t.Fatalf("rebuilt store: Jobs = %+v, %v", jobs, err)
	}
	if err := s.PutJob(Job{ID: "new", Started: t0}); err != nil {
		t.Fatal(err)
	}
	l := listing("new", "s/", "", 3, 1)
	s.Listings("new", "s/").SaveDir("", l)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Listings("new", "s/").LoadDir(""); !ok || !reflect.DeepEqual(got, normalize(l)) {
		t.Fatalf("rebuilt store does not keep listings: %v", ok)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := t.TempDir() + "/meta.db"
	s, _ := open(t, path)
	defer closeStore(t, s)
	start := time.Now()
	s2, err := Open(Options{Path: path})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a store in use succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("unclear error: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	if _, err := os.Stat(path + ".corrupt"); err == nil {
		t.Fatal("a locked store was moved aside")
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(Options{Path: t.TempDir() + "/no/such/dir/meta.db"}); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

func TestClosed(t *testing.T) {
	s, _ := open(t, t.TempDir()+"/meta.db")
	if err := s.PutJob(Job{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	l := s.Listings("a", "s/")
	closeStore(t, s)
	closeStore(t, s) // twice is fine
	l.SaveDir("", listing("a", "s/", "", 1, 1))
	if s.Dropped() != 1 {
		t.Fatalf("Dropped = %d after a save on a closed store", s.Dropped())
	}
	if _, ok := l.LoadDir(""); ok {
		t.Fatal("LoadDir on a closed store found something")
	}
	if err := s.PutJob(Job{ID: "b"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutJob after Close: %v", err)
	}
	if err := s.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if _, err := s.Jobs(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Jobs after Close: %v", err)
	}
}

func TestConcurrentSaves(t *testing.T) {
	s, _ := open(t, t.TempDir()+"/meta.db")
	defer closeStore(t, s)
	if err := s.PutJob(Job{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			l := s.Listings("a", fmt.Sprint("src", g))
			for i := range 200 {
				dir := fmt.Sprint(i)
				l.SaveDir(dir, listing("a", fmt.Sprint("src", g), dir, 5, int64(i)))
				if i%50 == 0 {
					l.LoadDir(dir)
				}
			}
		})
	}
	wg.Wait()
	flush(t, s)
	for g := range 8 {
		l := s.Listings("a", fmt.Sprint("src", g))
		for i := range 200 {
			if _, ok := l.LoadDir(fmt.Sprint(i)); !ok {
				t.Fatalf("src%d/%d lost", g, i)
			}
		}
	}
}
