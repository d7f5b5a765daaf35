package speculate

import (
	"context"
	"log/slog"
	"path"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitfs/jitfs/namespace"
)

// Lister is what a Speculator needs of a snapshot: a directory's entries,
// sorted by name, once listed. *namespace.Namespace fits.
type Lister interface {
	ListDir(ctx context.Context, dir string) ([]namespace.Entry, error)
}

// Fetcher makes one file resident: a fetch below every hook band, on the
// cache's own prefetch budget, which never takes a waiting read's slots.
type Fetcher func(ctx context.Context, e namespace.Entry) error

// Options configures a Speculator.
type Options struct {
	// Siblings turns sibling read-ahead on; Sequences, frame-sequence
	// read-ahead; CoOpen, starting the files learned to open together.
	Siblings  bool
	Sequences bool
	CoOpen    bool
	// MaxAhead bounds the files fetched ahead of one stream (default 32);
	// MaxBytes, their bytes (default 64 MiB). MaxFileBytes skips larger
	// files: their own sequential read-ahead serves them (default 8 MiB).
	MaxAhead     int
	MaxBytes     int64
	MaxFileBytes int64
	// Budget bounds the bytes every stream together has predicted and
	// not yet seen opened (default 4 × MaxBytes): speculation's own share
	// of the cache, whatever the number of streams.
	Budget int64
	// Workers bounds the speculative fetches at once (default 64: each
	// small file costs a round trip, and twenty directories read at once
	// are twenty streams).
	Workers int
	// Misses is the run of unread predictions after which a stream stops
	// speculating until it is seen reading in order again (default 8).
	Misses int
	// Streams bounds the directories followed at once (default 256).
	Streams int
	// CoOpenFile is where co-open learning keeps its groups across
	// restarts ("": in memory only). Speculators given one file share
	// what they learn.
	CoOpenFile string
	Logger     *slog.Logger
}

// Stats are cumulative counters.
type Stats struct {
	// Predicted counts files queued ahead of a stream; Fetched, those
	// fetched (some were resident already: Fetched counts them too);
	// Used, predicted files the stream then opened; Wasted, predicted
	// files the stream passed by or dropped without opening. Every
	// prediction ends as exactly one of Used and Wasted.
	Predicted, Fetched, Used, Wasted atomic.Int64
	// Bytes are the predicted files' sizes; UsedBytes and WastedBytes
	// split them as Used and Wasted split the files.
	Bytes, UsedBytes, WastedBytes atomic.Int64
	// Stopped counts streams that stopped after a run of misses.
	Stopped atomic.Int64
	// Siblings, Sequences and CoOpen count the predictions each kind made.
	Siblings, Sequences, CoOpen atomic.Int64
}

// Speculator follows the streams of one snapshot (one mount, or one job's
// view of a source on the node) and fetches ahead of them.
type Speculator struct {
	opts  Options
	list  Lister
	fetch Fetcher
	log   *slog.Logger
	ctx   context.Context
	stop  context.CancelFunc
	work  chan namespace.Entry
	wg    sync.WaitGroup
	// pending counts listings and predictions queued or being fetched.
	pending atomic.Int64

	mu    sync.Mutex
	dirs  map[string]*dirState // by directory
	order []string             // directories, oldest first (bounded by Streams)
	// aheadBytes is what every stream has predicted and not yet seen
	// opened: bounded by Options.Budget.
	aheadBytes int64

	co *coopen // nil without CoOpen

	Stats Stats
}

// dirState is one directory's listing and the streams reading it: one
// moving through the listing (siblings) and one per file sequence.
type dirState struct {
	path    string
	names   []string // files, sorted (nil until the listing is in)
	sizes   []int64
	entries []namespace.Entry
	listing bool     // a listing is being fetched for it
	early   []string // opens while it was, replayed in order

	sib  *track
	seqs map[string]*track // by pattern (name with its frame number as #)
	// ahead maps a predicted, not yet opened file (its listing index) to
	// the track that predicted it and where on that track it sits.
	ahead map[int]aheadOf
	// walked: a reader went through the directory in listing order;
	// continued: the walk was carried on into the next directory.
	walked, continued bool
}

type aheadOf struct {
	t   *track
	pos int
}

// maxSequences bounds the sequence streams followed in one directory.
const maxSequences = 64

// A track is a reader's progress along one ordering of a directory's
// files: listing indexes for siblings, frame numbers for a sequence. It
// learns the stride the reader moves by and predicts ahead of it.
type track struct {
	seq     bool
	frames  map[int]int // a sequence's frame number → listing index
	lo, hi  int         // the positions that exist
	maxStep int         // a larger step is a jump, not a stream

	last    int // the frontier: the furthest position opened, -1 before the first
	stride  int
	inOrder int // opens that moved the frontier forward by a small step
	depth   int
	ahead   map[int]int // predicted position → listing index
	misses  int
	stopped bool
}

func (t *track) resolve(pos int) (int, bool) {
	if !t.seq {
		return pos, pos >= t.lo && pos <= t.hi
	}
	i, ok := t.frames[pos]
	return i, ok
}

// New starts a Speculator; Close stops it.
func New(list Lister, fetch Fetcher, opts Options) *Speculator {
	if opts.MaxAhead <= 0 {
		opts.MaxAhead = 32
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.Budget <= 0 {
		opts.Budget = 4 * opts.MaxBytes
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 8 << 20
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.Misses <= 0 {
		opts.Misses = 8
	}
	if opts.Streams <= 0 {
		opts.Streams = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Speculator{opts: opts, list: list, fetch: fetch, log: opts.Logger, dirs: map[string]*dirState{},
		work: make(chan namespace.Entry, 4*opts.MaxAhead)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	for range opts.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	if opts.CoOpen {
		s.co = newCoOpen(s)
	}
	return s
}

// Close stops fetching and waits for the fetches in flight. What was
// predicted and never opened counts as wasted.
func (s *Speculator) Close() {
	s.stop()
	s.wg.Wait()
	if s.co != nil {
		s.co.close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.dirs {
		s.dropLocked(d)
	}
}

// dropLocked counts what a directory's streams predicted and nobody
// opened as wasted.
func (s *Speculator) dropLocked(d *dirState) {
	for i, a := range d.ahead {
		delete(a.t.ahead, a.pos)
		s.wasteLocked(d, i)
	}
}

func (s *Speculator) wasteLocked(d *dirState, i int) {
	delete(d.ahead, i)
	s.aheadBytes -= d.sizes[i]
	s.Stats.Wasted.Add(1)
	s.Stats.WastedBytes.Add(d.sizes[i])
}

// Settle waits until no listing or prediction is being fetched or queued
// (or ctx ends): a measurement that follows a read attributes what was fetched
// ahead of it to that read, not to the next.
func (s *Speculator) Settle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func (s *Speculator) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case e := <-s.work:
			err := s.fetch(s.ctx, e)
			s.pending.Add(-1)
			if err != nil {
				if s.ctx.Err() == nil {
					s.log.Debug("speculate: fetch ahead failed", "path", e.Path, "err", err)
				}
				continue
			}
			s.Stats.Fetched.Add(1)
		}
	}
}

// Opened tells the Speculator a file of its snapshot was opened (a path
// relative to the snapshot's root). It never blocks: the listing it needs
// is fetched in the background, and the first opens of a directory only
// teach it where the reader is.
func (s *Speculator) Opened(rel string) {
	if s.co != nil {
		s.co.opened(rel)
	}
	if !s.opts.Siblings && !s.opts.Sequences {
		return
	}
	dir, name := path.Split(rel)
	dir = trimSlash(dir)
	s.mu.Lock()
	d := s.dirs[dir]
	if d == nil {
		d = s.newDirLocked(dir)
	}
	if d.names == nil {
		if len(d.early) < 16 {
			d.early = append(d.early, name)
		}
		if !d.listing {
			d.listing = true
			s.pending.Add(1)
			go s.loadListing(dir, d)
		}
		s.mu.Unlock()
		return
	}
	s.openedLocked(d, name)
	s.mu.Unlock()
}

// newDirLocked starts following a directory, dropping the one followed
// longest ago past Options.Streams.
func (s *Speculator) newDirLocked(dir string) *dirState {
	d := &dirState{path: dir, ahead: map[int]aheadOf{}}
	s.dirs[dir] = d
	s.order = append(s.order, dir)
	if len(s.order) > s.opts.Streams {
		old := s.order[0]
		s.order = s.order[1:]
		if o := s.dirs[old]; o != nil && o.names != nil {
			s.dropLocked(o)
		}
		delete(s.dirs, old)
	}
	return d
}

// loadListing fetches a directory's listing for its streams, then replays
// the opens made meanwhile.
func (s *Speculator) loadListing(dir string, d *dirState) {
	ents, err := s.list.ListDir(s.ctx, dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.pending.Add(-1)
	d.listing = false
	if err != nil {
		d.early = nil
		return
	}
	s.setListingLocked(d, ents)
	for _, name := range d.early {
		s.openedLocked(d, name)
	}
	d.early = nil
}

// setListingLocked takes in a directory's listing: its files, and a
// sibling track over them.
func (s *Speculator) setListingLocked(d *dirState, ents []namespace.Entry) {
	names := []string{} // listed, even with no files
	d.sizes, d.entries = nil, nil
	for _, e := range ents {
		if !e.IsDir {
			names = append(names, e.Name())
			d.sizes = append(d.sizes, e.Attrs.Size)
			d.entries = append(d.entries, e)
		}
	}
	d.names = names
	d.sib = &track{lo: 0, hi: len(names) - 1, maxStep: 4, last: -1, depth: 4, ahead: map[int]int{}}
}

// openedLocked credits a prediction the open was, then moves the
// directory's streams to the opened file.
func (s *Speculator) openedLocked(d *dirState, name string) {
	i := sort.SearchStrings(d.names, name)
	if i >= len(d.names) || d.names[i] != name {
		return
	}
	if a, ok := d.ahead[i]; ok {
		delete(d.ahead, i)
		delete(a.t.ahead, a.pos)
		s.aheadBytes -= d.sizes[i]
		s.Stats.Used.Add(1)
		s.Stats.UsedBytes.Add(d.sizes[i])
		a.t.misses = 0
		a.t.depth = min(2*a.t.depth, s.opts.MaxAhead)
	}
	if s.opts.Siblings {
		s.advanceLocked(d, d.sib, i)
	}
	if s.opts.Sequences {
		if t, frame := s.sequenceLocked(d, name); t != nil {
			s.advanceLocked(d, t, frame)
		}
	}
}

// sequenceLocked finds (or starts) the sequence stream of a file whose
// name carries a frame number, if the directory holds other frames of it.
func (s *Speculator) sequenceLocked(d *dirState, name string) (*track, int) {
	pattern, frame, ok := parseFrame(name)
	if !ok {
		return nil, 0
	}
	if t := d.seqs[pattern]; t != nil {
		return t, frame
	}
	if len(d.seqs) >= maxSequences {
		return nil, 0
	}
	t := &track{seq: true, frames: map[int]int{}, maxStep: 16, last: -1, depth: 4, ahead: map[int]int{}}
	for j, n := range d.names {
		p, f, ok := parseFrame(n)
		if !ok || p != pattern {
			continue
		}
		if _, dup := t.frames[f]; dup {
			continue // plate.01 and plate.1: the first stands
		}
		if len(t.frames) == 0 || f < t.lo {
			t.lo = f
		}
		if len(t.frames) == 0 || f > t.hi {
			t.hi = f
		}
		t.frames[f] = j
	}
	if len(t.frames) < 2 {
		return nil, 0 // a lone numbered file is no sequence
	}
	if d.seqs == nil {
		d.seqs = map[string]*track{}
	}
	d.seqs[pattern] = t
	return t, frame
}

// advanceLocked moves a track to pos and predicts ahead of it when the
// reader moves forward by a small stride. Several readers of one
// directory (a render's threads) move one frontier: an open behind it is
// neither progress nor a miss.
func (s *Speculator) advanceLocked(d *dirState, t *track, pos int) {
	if t.last >= 0 && pos > t.last {
		// Predictions the readers have left far behind are wasted.
		span := s.opts.MaxAhead * max(t.stride, 1)
		for p, i := range t.ahead {
			if p < pos-span {
				delete(t.ahead, p)
				s.wasteLocked(d, i)
				t.misses++
			}
		}
	}
	switch step := pos - t.last; {
	case t.last < 0:
		t.last = pos
		return
	case step <= 0:
		return // behind the frontier: another reader, or the same file again
	case step <= t.maxStep:
		if t.stride == 0 || step < t.stride {
			t.stride = step
		}
		t.inOrder++
		t.last = pos
	default:
		// A jump: a new start, not a stream yet.
		t.stride, t.inOrder, t.last = 0, 0, pos
		return
	}
	if t.misses >= s.opts.Misses {
		if !t.stopped {
			t.stopped = true
			s.Stats.Stopped.Add(1)
		}
		// A stopped stream resumes after a longer run in order.
		if t.inOrder < 8 {
			return
		}
		t.stopped, t.misses, t.depth = false, 0, 2
	}
	if t.inOrder >= 4 && !t.seq {
		d.walked = true
	}
	seen, full := s.predictLocked(d, t, pos+t.stride, t.depth)
	if !full && !t.seq && t.stride == 1 && seen < t.depth && d.walked && !d.continued {
		// The window runs past the directory's last file: a walker that
		// came in from the directory before goes on to the next.
		d.continued = true
		s.pending.Add(1)
		go s.continueWalk(d.path, t.depth-seen)
	}
}

// predictLocked predicts the files of the window starting at position
// from: the next n files along the track, whoever predicted them, so
// siblings and a sequence over the same files do not fetch twice as far
// ahead. Missing frames (UDIM rows, gaps) are stepped over, a bounded
// number of them. It reports how many files of the window exist, and
// whether a bound (bytes, budget, busy workers) stopped it.
func (s *Speculator) predictLocked(d *dirState, t *track, from, n int) (seen int, full bool) {
	var bytes int64
	for _, i := range t.ahead {
		bytes += d.sizes[i]
	}
	stride := max(t.stride, 1)
	for p, steps := from, 0; p <= t.hi && seen < n && steps < 4*s.opts.MaxAhead; p, steps = p+stride, steps+1 {
		i, ok := t.resolve(p)
		if !ok {
			continue
		}
		seen++
		if _, dup := d.ahead[i]; dup || d.sizes[i] > s.opts.MaxFileBytes {
			continue
		}
		size := d.sizes[i]
		if bytes+size > s.opts.MaxBytes || s.aheadBytes+size > s.opts.Budget {
			return seen, true
		}
		s.pending.Add(1)
		select {
		case s.work <- d.entries[i]:
		default:
			s.pending.Add(-1)
			return seen, true // the workers are busy: the next open tries again
		}
		t.ahead[p] = i
		d.ahead[i] = aheadOf{t, p}
		bytes += size
		s.aheadBytes += size
		s.Stats.Predicted.Add(1)
		s.Stats.Bytes.Add(size)
		if t.seq {
			s.Stats.Sequences.Add(1)
		} else {
			s.Stats.Siblings.Add(1)
		}
	}
	return seen, false
}

// continueWalk predicts the first n files of the directory after dir in
// its parent's listing, when the walker also read the directory before
// dir in order: a tree read directory after directory (a texture library,
// a cache of frames a directory each) does not stall on the first files
// of each new directory.
func (s *Speculator) continueWalk(dir string, n int) {
	defer s.pending.Add(-1)
	if dir == "" {
		return
	}
	parent, base := path.Split(dir)
	parent = trimSlash(parent)
	ents, err := s.list.ListDir(s.ctx, parent)
	if err != nil {
		return
	}
	var subdirs []string
	for _, e := range ents {
		if e.IsDir {
			subdirs = append(subdirs, e.Name())
		}
	}
	i := slices.Index(subdirs, base)
	if i < 1 || i+1 >= len(subdirs) {
		return
	}
	join := func(name string) string {
		if parent == "" {
			return name
		}
		return parent + "/" + name
	}
	s.mu.Lock()
	prev := s.dirs[join(subdirs[i-1])]
	walkedIn := prev != nil && prev.walked
	next := join(subdirs[i+1])
	if !walkedIn || s.dirs[next] != nil {
		s.mu.Unlock()
		return // not a walk, or the reader is there already
	}
	d := s.newDirLocked(next)
	d.listing = true
	s.mu.Unlock()
	ents, err = s.list.ListDir(s.ctx, next)
	s.mu.Lock()
	defer s.mu.Unlock()
	d.listing = false
	if err != nil {
		d.early = nil
		return
	}
	s.setListingLocked(d, ents)
	if len(d.early) > 0 {
		for _, name := range d.early {
			s.openedLocked(d, name)
		}
		d.early = nil
		return
	}
	d.sib.stride = 1
	s.predictLocked(d, d.sib, 0, n)
}

// parseFrame splits a file name at its last run of digits: the pattern
// (the name with that run as #) and the frame number. plate.1001.exr and
// plate.1002.exr share a pattern; so do ground.1001.png and
// ground.1012.png (UDIM tiles).
func parseFrame(name string) (pattern string, frame int, ok bool) {
	end := len(name)
	for end > 0 && (name[end-1] < '0' || name[end-1] > '9') {
		end--
	}
	if end == 0 {
		return "", 0, false
	}
	start := end
	for start > 0 && name[start-1] >= '0' && name[start-1] <= '9' {
		start--
	}
	if end-start > 9 {
		return "", 0, false // a hash or a timestamp, not a frame
	}
	for _, c := range name[start:end] {
		frame = frame*10 + int(c-'0')
	}
	return name[:start] + "#" + name[end:], frame, true
}

func trimSlash(d string) string {
	for len(d) > 0 && d[len(d)-1] == '/' {
		d = d[:len(d)-1]
	}
	return d
}
