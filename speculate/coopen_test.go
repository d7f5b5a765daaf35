package speculate

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/namespace"
)

// tree is a fixed snapshot, the pure logic's input (the real namespace
// under a real mount is tested in cmd/jitfs/coopen_test.go).
type tree map[string]int64 // path → size

func (t tree) ListDir(_ context.Context, dir string) ([]namespace.Entry, error) {
	var out []namespace.Entry
	for p, size := range t {
		if d := filepath.Dir(p); d == dir || d == "." && dir == "" {
			out = append(out, namespace.Entry{Path: p, Attrs: gcs.Attrs{Name: p, Size: size}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// fetches records what was fetched, in order.
type fetches struct {
	mu  sync.Mutex
	got []string
}

func (f *fetches) fetch(_ context.Context, e namespace.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, e.Path)
	return nil
}

func (f *fetches) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]string(nil), f.got...)
	sort.Strings(out)
	return out
}

func (f *fetches) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// clock is a test's time: sessions end and predictions expire when the
// test says so, not when a loaded machine gets round to it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func startCoOpen(t *testing.T, tr tree, f *fetches, opts Options) (*Speculator, *clock) {
	t.Helper()
	opts.CoOpen = true
	s := New(tr, f.fetch, opts)
	clk := &clock{t: time.Unix(1_000_000, 0)}
	s.co.mu.Lock()
	s.co.now = clk.now
	s.co.mu.Unlock()
	return s, clk
}

// render opens files a few milliseconds apart, as a renderer parsing a
// scene and its includes does.
func render(s *Speculator, clk *clock, files ...string) {
	for _, f := range files {
		s.Opened(f)
		clk.add(10 * time.Millisecond)
	}
}

// pause is a quiet time that ends the session in progress.
func pause(s *Speculator, clk *clock) {
	clk.add(coGap + time.Second)
	s.co.tick()
}

// later is long enough after the last opens that their files are no
// longer taken as resident, and predictions made meanwhile expire.
func later(s *Speculator, clk *clock) {
	clk.add(coLife + time.Second)
	s.co.tick()
}

func settle(t *testing.T, s *Speculator) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Settle(ctx); err != nil {
		t.Fatal("predictions still queued after a minute")
	}
}

func exact(t *testing.T, s *Speculator, predicted, used, wasted int64) {
	t.Helper()
	st := &s.Stats
	if st.Predicted.Load() != predicted || st.Used.Load() != used || st.Wasted.Load() != wasted {
		t.Fatalf("predicted %d, used %d, wasted %d; want %d, %d, %d",
			st.Predicted.Load(), st.Used.Load(), st.Wasted.Load(), predicted, used, wasted)
	}
	if st.CoOpen.Load() != predicted {
		t.Fatalf("%d predictions counted as co-open's, of %d", st.CoOpen.Load(), predicted)
	}
	if used+wasted == predicted && st.UsedBytes.Load()+st.WastedBytes.Load() != st.Bytes.Load() {
		t.Fatalf("used %d + wasted %d bytes, of %d predicted", st.UsedBytes.Load(), st.WastedBytes.Load(), st.Bytes.Load())
	}
	s.mu.Lock()
	ahead := s.aheadBytes
	s.mu.Unlock()
	if want := st.Bytes.Load() - st.UsedBytes.Load() - st.WastedBytes.Load(); ahead != want {
		t.Fatalf("%d bytes held against the budget, %d predicted and not yet settled", ahead, want)
	}
}

var chain = tree{"scene.pov": 100, "inc/a.inc": 200, "lib/b.inc": 300, "tex/c.inc": 400, "other.txt": 5}

// An include chain rendered once is fetched ahead when its scene leads
// again: every follower predicted, fetched, and counted used when opened.
func TestCoOpenIncludeChain(t *testing.T) {
	f := &fetches{}
	s, clk := startCoOpen(t, chain, f, Options{})
	render(s, clk, "scene.pov", "inc/a.inc", "lib/b.inc", "tex/c.inc")
	later(s, clk)
	if f.count() != 0 {
		t.Fatalf("fetched %v while learning", f.list())
	}
	render(s, clk, "scene.pov")
	settle(t, s)
	if got, want := f.list(), []string{"inc/a.inc", "lib/b.inc", "tex/c.inc"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fetched %v ahead of the scene, want %v", got, want)
	}
	exact(t, s, 3, 0, 0)
	if b := s.Stats.Bytes.Load(); b != 900 {
		t.Fatalf("%d bytes predicted, want 900", b)
	}
	render(s, clk, "inc/a.inc", "lib/b.inc", "tex/c.inc")
	exact(t, s, 3, 3, 0)
	s.Close()
	exact(t, s, 3, 3, 0)
}

// The session ends when its leader opens again (a render loop's next
// frame), not only after a pause; a follower seen in one session of two
// is no longer predicted.
func TestCoOpenLeaderRestartsSession(t *testing.T) {
	f := &fetches{}
	s, clk := startCoOpen(t, chain, f, Options{})
	render(s, clk, "scene.pov", "inc/a.inc", "other.txt", "scene.pov")
	if got := s.co.mem.predict(splitFrame("scene.pov")); fmt.Sprint(got) != "[inc/a.inc other.txt]" {
		t.Fatalf("the first frame taught %v", got)
	}
	// Opened just now, the files are resident: not predicted.
	render(s, clk, "inc/a.inc", "other.txt")
	exact(t, s, 0, 0, 0)
	// Then frames minutes apart, opening only a.inc.
	for frame, want := range [][3]int64{{2, 1, 1}, {4, 2, 2}, {5, 3, 2}} {
		later(s, clk)
		render(s, clk, "scene.pov")
		settle(t, s)
		render(s, clk, "inc/a.inc")
		later(s, clk)
		// other.txt is predicted while it was seen in most sessions
		// (2 of 3, not 2 of 4), and wasted each time.
		if st := &s.Stats; st.Predicted.Load() != want[0] || st.Used.Load() != want[1] || st.Wasted.Load() != want[2] {
			t.Fatalf("frame %d: predicted %d, used %d, wasted %d; want %v", frame+3, st.Predicted.Load(), st.Used.Load(), st.Wasted.Load(), want)
		}
	}
	s.Close()
	exact(t, s, 5, 3, 2)
}

// A group learned on one frame applies to the next with the frame number
// substituted; a file of the leader's own sequence is never a follower.
func TestCoOpenFrames(t *testing.T) {
	tr := tree{"lut/show.cube": 10}
	for n := 1001; n <= 1005; n++ {
		tr[fmt.Sprintf("plate/plate.%d.exr", n)] = 100
		tr[fmt.Sprintf("matte/matte.%d.exr", n)] = 50
	}
	f := &fetches{}
	s, clk := startCoOpen(t, tr, f, Options{})
	render(s, clk, "plate/plate.1001.exr", "matte/matte.1001.exr", "lut/show.cube")
	render(s, clk, "plate/plate.1002.exr")
	settle(t, s)
	// The LUT, opened on the frame before, is resident.
	if got, want := f.list(), []string{"matte/matte.1002.exr"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frame 1002 fetched %v, want %v", got, want)
	}
	render(s, clk, "matte/matte.1002.exr", "lut/show.cube")
	render(s, clk, "plate/plate.1003.exr")
	settle(t, s)
	if got := f.list(); !contains(got, "matte/matte.1003.exr") || contains(got, "plate/plate.1004.exr") {
		t.Fatalf("frame 1003 fetched %v: want matte.1003, never the plate's own next frame", got)
	}
	render(s, clk, "matte/matte.1003.exr", "lut/show.cube")
	s.Close()
	exact(t, s, 2, 2, 0)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// A scene with no frame number, opened once per frame, learns which frame
// of a per-frame sequence (a cache, a data include) each frame opens, and
// fetches the next one ahead; a tile that keeps its number is not taken
// for a sequence.
func TestCoOpenSequenceFollower(t *testing.T) {
	tr := tree{"scene.pov": 1, "tex/wood.1001.tx": 10}
	for n := 1; n <= 9; n++ {
		tr[fmt.Sprintf("data/pos.%04d.inc", n)] = 100
	}
	f := &fetches{}
	s, clk := startCoOpen(t, tr, f, Options{})
	frame := func(n int) {
		render(s, clk, "scene.pov")
		settle(t, s)
		render(s, clk, "tex/wood.1001.tx", fmt.Sprintf("data/pos.%04d.inc", n))
	}
	frame(1)
	frame(2)
	if f.count() != 0 {
		t.Fatalf("fetched %v before a step was seen", f.list())
	}
	for n := 3; n <= 6; n++ {
		frame(n)
		if want := fmt.Sprintf("data/pos.%04d.inc", n); !contains(f.list(), want) {
			t.Fatalf("frame %d: fetched %v, want %s among them", n, f.list(), want)
		}
	}
	s.Close()
	exact(t, s, 4, 4, 0)
	// Every second frame (a farm's task per two frames): the step follows.
	f = &fetches{}
	s, clk = startCoOpen(t, tr, f, Options{})
	for _, n := range []int{1, 3, 5} {
		frame(n)
	}
	if got := f.list(); fmt.Sprint(got) != "[data/pos.0005.inc]" {
		t.Fatalf("frames 1, 3, 5 fetched %v", got)
	}
	s.Close()
	exact(t, s, 1, 1, 0)
}

// A file that is the same on every frame (a UDIM tile that happens to
// share the frame's number) is learned literally once a second frame
// tells it apart from a frame-relative one.
func TestCoOpenLiteralOrFrame(t *testing.T) {
	tr := tree{"tex/wood.1001.tx": 10}
	for n := 1001; n <= 1004; n++ {
		tr[fmt.Sprintf("plate.%d.exr", n)] = 100
	}
	f := &fetches{}
	s, clk := startCoOpen(t, tr, f, Options{})
	render(s, clk, "plate.1001.exr", "tex/wood.1001.tx")
	later(s, clk)
	// Frame-relative wins a tie: tex/wood.1002.tx is not in the bucket, so
	// its lookup fails and nothing is predicted.
	render(s, clk, "plate.1002.exr", "tex/wood.1001.tx")
	later(s, clk)
	render(s, clk, "plate.1003.exr")
	settle(t, s)
	if got := f.list(); fmt.Sprint(got) != "[tex/wood.1001.tx]" {
		t.Fatalf("frame 1003 fetched %v, want the tile learned literally", got)
	}
	s.Close()
	exact(t, s, 1, 0, 1)
}

// A leader whose predictions go unopened is forgotten after a run of
// misses, and its waste is counted exactly.
func TestCoOpenForget(t *testing.T) {
	f := &fetches{}
	s, clk := startCoOpen(t, chain, f, Options{Misses: 2})
	render(s, clk, "scene.pov", "inc/a.inc", "lib/b.inc", "tex/c.inc")
	later(s, clk)
	render(s, clk, "scene.pov")
	settle(t, s)
	exact(t, s, 3, 0, 0)
	later(s, clk)
	exact(t, s, 3, 0, 3)
	if s.Stats.Stopped.Load() != 1 || s.co.mem.len() != 0 {
		t.Fatalf("stopped %d, %d groups left: the wasted leader was not forgotten", s.Stats.Stopped.Load(), s.co.mem.len())
	}
	render(s, clk, "scene.pov")
	settle(t, s)
	s.Close()
	exact(t, s, 3, 0, 3)
}

// Followers past the byte bound, or gone from the snapshot, are not
// predicted; a follower opened before its lookup ends is not either.
func TestCoOpenBounds(t *testing.T) {
	tr := tree{"scene.pov": 1, "big.abc": 1000, "small.inc": 10, "gone.inc": 10}
	f := &fetches{}
	s, clk := startCoOpen(t, tr, f, Options{MaxBytes: 500})
	render(s, clk, "scene.pov", "big.abc", "small.inc", "gone.inc")
	later(s, clk)
	delete(tr, "gone.inc") // the pure logic's trees are read only by lookups, after Settle
	render(s, clk, "scene.pov")
	settle(t, s)
	if got := f.list(); fmt.Sprint(got) != "[small.inc]" {
		t.Fatalf("fetched %v, want only small.inc", got)
	}
	s.Close()
	exact(t, s, 1, 0, 1)
}

// Groups survive a restart through the file; two Speculators of one file
// share them; with co-open off nothing is learned, fetched or written.
func TestCoOpenPersist(t *testing.T) {
	file := filepath.Join(t.TempDir(), "coopen", "groups")
	f := &fetches{}
	s, clk := startCoOpen(t, chain, f, Options{CoOpenFile: file})
	s2, clk2 := startCoOpen(t, chain, f, Options{CoOpenFile: file})
	render(s, clk, "scene.pov", "inc/a.inc", "lib/b.inc")
	pause(s, clk)
	render(s2, clk2, "scene.pov") // another job of the source, learned from the first
	settle(t, s2)
	render(s2, clk2, "inc/a.inc", "lib/b.inc")
	s2.Close()
	exact(t, s2, 2, 2, 0)
	s.Close()
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("groups not saved: %v", err)
	}

	f = &fetches{}
	s, clk = startCoOpen(t, chain, f, Options{CoOpenFile: file})
	render(s, clk, "scene.pov")
	settle(t, s)
	render(s, clk, "inc/a.inc", "lib/b.inc")
	s.Close()
	exact(t, s, 2, 2, 0)

	off := filepath.Join(t.TempDir(), "off")
	s = New(chain, f.fetch, Options{Siblings: true, CoOpenFile: off})
	for range 3 {
		for _, p := range []string{"scene.pov", "inc/a.inc", "lib/b.inc", "tex/c.inc"} {
			s.Opened(p)
		}
	}
	s.Close()
	if _, err := os.Stat(off); !os.IsNotExist(err) {
		t.Fatalf("co-open off, yet its file is there (%v)", err)
	}
	exact(t, s, 0, 0, 0)
}

// A file that does not check out (garbage, cut short, a flipped byte,
// values learning never makes) is ignored with a log line, and the next
// save replaces it.
func TestCoOpenCorruptFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	f := &fetches{}
	s, clk := startCoOpen(t, chain, f, Options{CoOpenFile: good})
	render(s, clk, "scene.pov", "inc/a.inc")
	s.Close()
	valid, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-3] ^= 0x20
	// A checksummed payload with a count no session could have left.
	forged := filepath.Join(dir, "forged")
	if err := writeAtomic(forged, []byte(`[{"k":"scene.pov","n":1,"f":[{"p":"inc/a.inc","h":7}]}]`)); err != nil {
		t.Fatal(err)
	}
	forgedBytes, _ := os.ReadFile(forged)
	for name, b := range map[string][]byte{
		"garbage":   []byte("not a co-open file at all"),
		"empty":     nil,
		"truncated": valid[:len(valid)-5],
		"header":    valid[:6],
		"flipped":   flipped,
		"forged":    forgedBytes,
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name)
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			f := &fetches{}
			s, clk := startCoOpen(t, chain, f, Options{CoOpenFile: file, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if n := s.co.mem.len(); n != 0 {
				t.Fatalf("%d groups loaded from a bad file", n)
			}
			render(s, clk, "scene.pov")
			settle(t, s)
			render(s, clk, "inc/a.inc")
			s.Close()
			if f.count() != 0 {
				t.Fatalf("fetched %v from a bad file's groups", f.list())
			}
			if !strings.Contains(logs.String(), "co-open groups") {
				t.Fatalf("no log line for the bad file; logs:\n%s", logs.String())
			}
			if _, err := readGroups(file); err != nil {
				t.Fatalf("the next save did not replace the bad file: %v", err)
			}
		})
	}
}

// The groups are bounded: the least recently led is forgotten first.
func TestCoOpenMemoryBound(t *testing.T) {
	m := newMemory("", slog.New(slog.DiscardHandler))
	for i := range coMaxLeaders + 10 {
		m.learn(splitFrame(fmt.Sprintf("d%d/scene.pov", i)), []string{"a.inc"})
	}
	if m.len() != coMaxLeaders {
		t.Fatalf("%d leaders kept, bound %d", m.len(), coMaxLeaders)
	}
	if m.has(splitFrame("d0/scene.pov").key()) || !m.has(splitFrame(fmt.Sprintf("d%d/scene.pov", coMaxLeaders+9)).key()) {
		t.Fatal("not the least recently led forgotten")
	}
}

func TestSplitFrame(t *testing.T) {
	for in, want := range map[string]string{
		"plate/plate.1001.exr":   "plate/plate.|1001|.exr",
		"shot_v002/comp.0042.nk": "shot_v002/comp.|0042|.nk",
		"a1.inc":                 "a1.inc",
		"v2/scene.pov":           "v2/scene.pov",
		"tex/wood_1001_col.tx":   "tex/wood_|1001|_col.tx",
		"id.12345678901.bin":     "id.12345678901.bin",
	} {
		f := splitFrame(in)
		got := f.pre
		if f.width > 0 {
			got = f.pre + "|" + f.at(f.frame)[len(f.pre):len(f.pre)+f.width] + "|" + f.post
		}
		if got != want {
			t.Errorf("splitFrame(%q) = %q, want %q", in, got, want)
		}
	}
}
