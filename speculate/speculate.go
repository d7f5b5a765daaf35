package speculate

import (
	"context"
	"log/slog"
	"path"
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
	// Workers bounds the speculative fetches at once (default 64: each
	// small file costs a round trip, and twenty directories read at once
	// are twenty streams).
	Workers int
	// Misses is the run of unread predictions after which a stream stops
	// speculating until it is seen reading in order again (default 8).
	Misses int
	// Streams bounds the directories followed at once (default 256).
	Streams int
	Logger  *slog.Logger
}

// Stats are cumulative counters.
type Stats struct {
	// Predicted counts files queued ahead of a stream; Fetched, those
	// fetched (some were resident already: Fetched counts them too);
	// Used, predicted files the stream then opened; Wasted, predicted
	// files the stream passed by or dropped without opening.
	Predicted, Fetched, Used, Wasted atomic.Int64
	// Bytes are the predicted files' sizes.
	Bytes atomic.Int64
	// Stopped counts streams that stopped after a run of misses.
	Stopped atomic.Int64
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
	// pending counts predictions queued or being fetched.
	pending atomic.Int64

	mu      sync.Mutex
	streams map[string]*stream // by directory
	order   []string           // directories, oldest first (bounded by Streams)

	Stats Stats
}

// stream is the reading of one directory: where the reader is in its
// listing, the stride it moves by, and what was predicted ahead of it.
type stream struct {
	names   []string // files, sorted (nil until the listing is in)
	sizes   []int64
	entries []namespace.Entry
	listing bool     // a listing is being fetched for it
	early   []string // opens while it was, replayed in order

	last    int // the frontier: the furthest file opened, -1 before the first
	stride  int
	inOrder int // opens that moved the frontier forward by a small step
	depth   int
	ahead   map[int]bool // predicted, not yet opened
	next    int          // first index not yet predicted
	misses  int
	stopped bool
}

// New starts a Speculator; Close stops it.
func New(list Lister, fetch Fetcher, opts Options) *Speculator {
	if opts.MaxAhead <= 0 {
		opts.MaxAhead = 32
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
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
	s := &Speculator{opts: opts, list: list, fetch: fetch, log: opts.Logger, streams: map[string]*stream{},
		work: make(chan namespace.Entry, 4*opts.MaxAhead)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	for range opts.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	return s
}

// Close stops fetching and waits for the fetches in flight. What was
// predicted and never opened counts as wasted.
func (s *Speculator) Close() {
	s.stop()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		s.Stats.Wasted.Add(int64(len(st.ahead)))
		st.ahead = nil
	}
}

// Settle waits until no prediction is queued or being fetched (or ctx
// ends): a measurement that follows a read attributes what was fetched
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
	if !s.opts.Siblings && !s.opts.Sequences {
		return
	}
	dir, name := path.Split(rel)
	dir = trimSlash(dir)
	s.mu.Lock()
	st := s.streams[dir]
	if st == nil {
		st = &stream{last: -1, depth: 4, ahead: map[int]bool{}}
		s.streams[dir] = st
		s.order = append(s.order, dir)
		if len(s.order) > s.opts.Streams {
			old := s.order[0]
			s.order = s.order[1:]
			if o := s.streams[old]; o != nil {
				s.Stats.Wasted.Add(int64(len(o.ahead)))
			}
			delete(s.streams, old)
		}
	}
	if st.names == nil {
		if len(st.early) < 16 {
			st.early = append(st.early, name)
		}
		if !st.listing {
			st.listing = true
			go s.loadListing(dir, st)
		}
		s.mu.Unlock()
		return
	}
	s.openedLocked(st, name)
	s.mu.Unlock()
}

// loadListing fetches a directory's listing for its stream, then replays
// the opens made meanwhile.
func (s *Speculator) loadListing(dir string, st *stream) {
	ents, err := s.list.ListDir(s.ctx, dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	st.listing = false
	if err != nil {
		st.early = nil
		return
	}
	st.names, st.sizes, st.entries = nil, nil, nil
	for _, e := range ents {
		if !e.IsDir {
			st.names = append(st.names, e.Name())
			st.sizes = append(st.sizes, e.Attrs.Size)
			st.entries = append(st.entries, e)
		}
	}
	if st.names == nil {
		st.names = []string{} // listed, no files
	}
	for _, name := range st.early {
		s.openedLocked(st, name)
	}
	st.early = nil
}

// openedLocked moves the stream to name and predicts ahead of it when the
// reader moves forward through the listing by a small stride. Several
// readers of one directory (a render's threads) move one frontier: an open
// behind it is neither progress nor a miss.
func (s *Speculator) openedLocked(st *stream, name string) {
	i := sort.SearchStrings(st.names, name)
	if i >= len(st.names) || st.names[i] != name {
		return
	}
	if st.ahead[i] {
		delete(st.ahead, i)
		s.Stats.Used.Add(1)
		st.misses = 0
		st.depth = min(2*st.depth, s.opts.MaxAhead)
	}
	if st.last >= 0 && i > st.last {
		// Predictions the readers have left far behind are wasted.
		for j := range st.ahead {
			if j < i-s.opts.MaxAhead {
				delete(st.ahead, j)
				s.Stats.Wasted.Add(1)
				st.misses++
			}
		}
	}
	switch step := i - st.last; {
	case st.last < 0:
		st.last = i
		return
	case step <= 0:
		return // behind the frontier: another reader, or the same file again
	case step <= 4:
		if st.stride == 0 || step < st.stride {
			st.stride, st.next = step, 0
		}
		st.inOrder++
		st.last = i
	default:
		// A jump: a new start, not a stream yet.
		st.stride, st.inOrder, st.next, st.last = 0, 0, 0, i
		return
	}
	if st.misses >= s.opts.Misses {
		if !st.stopped {
			st.stopped = true
			s.Stats.Stopped.Add(1)
		}
		// A stopped stream resumes after a longer run in order.
		if st.inOrder < 8 {
			return
		}
		st.stopped, st.misses, st.depth = false, 0, 2
	}
	if st.next <= i {
		st.next = i + st.stride
	}
	var bytes int64
	for j := range st.ahead {
		bytes += st.sizes[j]
	}
	for st.next < len(st.names) && len(st.ahead) < st.depth {
		j := st.next
		if st.sizes[j] > s.opts.MaxFileBytes {
			st.next += st.stride
			continue
		}
		if bytes+st.sizes[j] > s.opts.MaxBytes {
			break
		}
		s.pending.Add(1)
		select {
		case s.work <- st.entries[j]:
		default:
			s.pending.Add(-1)
			return // the workers are busy: the next open tries again
		}
		st.next += st.stride
		st.ahead[j] = true
		bytes += st.sizes[j]
		s.Stats.Predicted.Add(1)
		s.Stats.Bytes.Add(st.sizes[j])
	}
}

func trimSlash(d string) string {
	for len(d) > 0 && d[len(d)-1] == '/' {
		d = d[:len(d)-1]
	}
	return d
}
