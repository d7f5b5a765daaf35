package metastore

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"

	"github.com/jitfs/jitfs/namespace"
)

// corruptSeeds is the number of random cases of each kind; raise it to
// search longer (go test -run Corruption -corrupt-seeds=2000).
var corruptSeeds = flag.Int("corrupt-seeds", 60, "random damage cases of each kind")

type savedKey struct{ job, source, dir string }

// corruptBase builds a store of three jobs, two sources each, with small
// listings (sharing leaf pages) and large ones (overflow pages), and
// returns its bytes and what it holds.
func corruptBase(t *testing.T) ([]byte, map[string]Job, map[savedKey]*savedListing) {
	t.Helper()
	path := t.TempDir() + "/base.db"
	s, _ := open(t, path)
	jobs := map[string]Job{}
	want := map[savedKey]*savedListing{}
	seed := int64(0)
	for j := range 3 {
		job := Job{ID: fmt.Sprint("job-", j), Started: t0.Add(-10e9 * 60)}
		if err := s.PutJob(job); err != nil {
			t.Fatal(err)
		}
		jobs[job.ID] = job
		for _, src := range []string{"bucket/a/", "bucket/b/"} {
			ls := s.Listings(job.ID, src)
			for d := range 15 {
				dir := fmt.Sprint("shot/", d)
				seed++
				l := listing(job.ID, src, dir, []int{0, 2, 30, 300}[d%4], seed)
				ls.SaveDir(dir, l)
				want[savedKey{job.ID, src, dir}] = &savedListing{l: normalize(l)}
			}
		}
	}
	flush(t, s)
	closeStore(t, s)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, jobs, want
}

type savedListing struct{ l namespace.Listing }

// TestCorruptionNeverServesAWrongGeneration damages the file in many ways:
// every case is either detected at Open (the store rebuilt empty) or, if
// Open passes, every listing is served exactly as saved or not at all.
func TestCorruptionNeverServesAWrongGeneration(t *testing.T) {
	base, jobs, want := corruptBase(t)
	const page = 4096
	type damage struct {
		name string
		mut  func([]byte) []byte
	}
	var cases []damage
	overwrite := func(name string, off, n int, seed uint64, fill func(r *rand.Rand) byte) {
		cases = append(cases, damage{name, func(b []byte) []byte {
			r := rand.New(rand.NewPCG(seed, 1))
			for i := off; i < off+n && i < len(b); i++ {
				b[i] = fill(r)
			}
			return b
		}})
	}
	random := func(r *rand.Rand) byte { return byte(r.UintN(256)) }
	zero := func(*rand.Rand) byte { return 0 }
	// The meta pages: one, the other, both.
	for seed := range uint64(4) {
		overwrite(fmt.Sprint("meta0/", seed), 16+int(seed)*8, 32, seed, random)
		overwrite(fmt.Sprint("meta1/", seed), page+16+int(seed)*8, 32, seed, random)
	}
	overwrite("both metas", 0, 2*page, 9, random)
	overwrite("meta0 zeroed", 0, page, 0, zero)
	// Regions of data pages: random bytes, and zeroed pages as a torn
	// write leaves them.
	for seed := range uint64(*corruptSeeds) {
		r := rand.New(rand.NewPCG(seed, 2))
		off := 2*page + r.IntN(len(base)-2*page)
		n := []int{1, 8, 64, 512, page, 4 * page}[seed%6]
		overwrite(fmt.Sprintf("data/%d@%d+%d", seed, off, n), off, n, seed, random)
		zoff := (2 + r.IntN(len(base)/page-2)) * page
		overwrite(fmt.Sprintf("zeroed page/%d@%d", seed, zoff), zoff, page, seed, zero)
	}
	// Single bit flips anywhere.
	for seed := range uint64(*corruptSeeds) {
		cases = append(cases, damage{fmt.Sprint("bitflip/", seed), func(b []byte) []byte {
			r := rand.New(rand.NewPCG(seed, 3))
			i := r.IntN(len(b))
			b[i] ^= 1 << r.IntN(8)
			return b
		}})
	}
	for _, frac := range []int{2, 3, 10} {
		cases = append(cases, damage{fmt.Sprint("truncated to 1/", frac), func(b []byte) []byte { return b[:len(b)/frac] }})
	}
	cases = append(cases,
		damage{"truncated to two pages", func(b []byte) []byte { return b[:2*page] }},
		damage{"truncated mid meta", func(b []byte) []byte { return b[:100] }},
		damage{"garbage", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(7, 7))
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			return b
		}},
		damage{"small garbage", func([]byte) []byte { return []byte("not a bbolt file\n") }},
	)

	rebuilt, lostSome, intact := 0, 0, 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := t.TempDir() + "/meta.db"
			if err := os.WriteFile(path, c.mut(append([]byte(nil), base...)), 0o600); err != nil {
				t.Fatal(err)
			}
			s, logs := open(t, path)
			defer closeStore(t, s)
			if ok, why := s.Rebuilt(); ok {
				t.Logf("rebuilt: %s", why)
				rebuilt++
				assertRebuilt(t, s, path, logs)
				return
			}
			got, err := s.Jobs()
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range got {
				if j != jobs[j.ID] {
					t.Fatalf("job %+v served, saved %+v", j, jobs[j.ID])
				}
			}
			lost := 0
			for k, w := range want {
				l, ok := s.Listings(k.job, k.source).LoadDir(k.dir)
				if !ok {
					lost++
					continue
				}
				if !reflect.DeepEqual(l, w.l) {
					t.Fatalf("%v: served a listing other than the one saved:\n got %+v\nwant %+v", k, l, w.l)
				}
			}
			if lost > 0 {
				lostSome++
			} else {
				intact++
			}
			// Writes must not bring the process down either.
			_ = s.PutJob(Job{ID: "job-0", Started: t0})
			s.Listings("job-0", "bucket/a/").SaveDir("new", want[savedKey{"job-0", "bucket/a/", "shot/1"}].l)
			_ = s.Flush()
		})
	}
	t.Logf("%d cases: %d rebuilt at Open, %d lost some listings (listed again), %d intact", len(cases), rebuilt, lostSome, intact)
}
