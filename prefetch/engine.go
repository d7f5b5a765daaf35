package prefetch

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/hooks"

	"go.opentelemetry.io/otel/trace"
)

// Resolver maps a mount-relative path to the object generation the mount
// serves for it. *jitfs.FS implements it.
type Resolver interface {
	Resolve(ctx context.Context, rel string) (cache.Meta, error)
}

// Options configures an Engine.
type Options struct {
	Resolver Resolver
	Cache    *cache.Cache
	Source   cache.Source
	// Workers bounds the files prefetched at once (default 32); the
	// cache's prefetch byte budget bounds the bytes in flight. Thousands
	// of small files need many at once: each costs a round trip.
	Workers int
	// PinFraction bounds pinned bytes to this fraction of the cache
	// budget (default 0.5).
	PinFraction float64
	// MaxQueued bounds the files queued or being fetched, over every
	// request and job (default 200,000): what the engine holds in memory
	// for work not done yet. Frame and miss requests may fill it; other
	// scopes only three quarters of it, so a wide job or look-ahead
	// request never keeps a frame's files out. A request that does not fit
	// is refused whole (hooks.ErrBusy).
	MaxQueued int
	// MaxJobFiles bounds the distinct files one job may have asked for
	// until it is released (default 500,000): the per-job progress the
	// engine keeps. Names not in the bucket do not count against it.
	MaxJobFiles int
	Logger      *slog.Logger
}

// Defaults for Options' bounds.
const (
	DefaultMaxQueued   = 200_000
	DefaultMaxJobFiles = 500_000
)

// task is one file being made resident. Requests for the same file and
// ranges share it.
type task struct {
	key      string
	want     hooks.Want
	priority int
	seq      int64
	index    int // in the heap; -1 once taken
	done     chan struct{}
	// Set before done closes.
	state hooks.ItemState
	err   error
	size  int64
	// pins: the jobs (and frames) that asked for it pinned.
	pins []pinReq
	// cause is the span of the request that queued the task; its fills
	// link to it, so a frame's wait can be followed to the GCS reads. who
	// is that request's job, task and scope, which its fills carry into
	// what `jitfs status` shows in flight.
	cause trace.SpanContext
	who   cache.Asker

	// What waiting requests' progress needs (guarded by Engine.mu):
	// the waits counting on the task until it ends, when its fetch began,
	// and, once the file is resolved, the bytes wanted of it and how much
	// of it has arrived.
	waits   []*waitState
	started time.Time
	sized   bool
	wanted  int64
	arrived func() int64
}

// waitState is one waiting request's progress, kept current as its tasks
// are sized and end, so a status report makes no pass over its files.
// Guarded by Engine.mu.
type waitState struct {
	id, job string
	started time.Time
	tasks   []*task
	// next: every task before it has ended, so the first still queued is
	// found from there.
	next                      int
	resident, missing, failed int
	bytes, residentBytes      int64
	unsized                   int // tasks neither sized nor ended
}

type pinReq struct {
	job   string
	frame *int
	pin   bool // hold the file for the job (frame, miss and job scopes)
}

type taskHeap []*task

func (h taskHeap) Len() int { return len(h) }
func (h taskHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h taskHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *taskHeap) Push(x any)   { t := x.(*task); t.index = len(*h); *h = append(*h, t) }
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

// pin is a file held open for a job.
type pin struct {
	f      *held
	size   int64
	frames map[int]bool // frames that asked; empty: job-wide
	job    bool         // asked job-wide
}

// held is one object generation the engine holds open for its pins. Jobs
// that pin the same generation share it, so pinning for another job never
// opens the file again under mu; the last pin to go closes it.
type held struct {
	h    *cache.Handle
	meta cache.Meta
	refs int // pins sharing h
}

type jobState struct {
	id       string
	missing  int64            // names asked for that are not in the bucket
	wanted   map[string]int64 // rel -> size (0 until known)
	resident map[string]bool
	pins     map[string]*pin
	pinned   int64
}

// Engine is the prefetch engine.
type Engine struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond
	queue    taskHeap
	tasks    map[string]*task // queued or in flight
	jobs     map[string]*jobState
	held     map[cache.Meta]*held // what pins hold open
	seq      int64
	pinned   int64
	inFlight int64
	closed   bool
	// waits are the requests waiting now, oldest first; running, the
	// tasks being fetched (at most Workers).
	waits   []*waitState
	running map[*task]struct{}

	learners                      map[string]*learner
	learnedPredicted, learnedUsed int64
	// taught is frame knowledge from elsewhere (shared.go); its
	// predictions are counted apart.
	taught                      []FrameFile
	sharedPredicted, sharedUsed int64
	startSeq                    int64

	outstanding atomic.Int64
	wg          sync.WaitGroup
	ctx         context.Context
	cancel      context.CancelFunc

	// PinRefusals counts pins refused because the pin budget was full.
	PinRefusals atomic.Int64
	// Missing counts prefetched names not in the bucket; Refused, files of
	// requests refused at the engine's bounds.
	Missing, Refused atomic.Int64
	// lastFree rate-limits returning memory to the OS after big releases
	// and drained queues; sinceFree counts tasks ended since (guarded by mu).
	lastFree  atomic.Int64
	sinceFree int
	// learning is set once any job has opened a frame window, so the
	// FUSE open path skips the engine's lock until then.
	learning atomic.Bool
}

// New starts an engine's workers.
func New(opts Options) (*Engine, error) {
	if opts.Resolver == nil || opts.Cache == nil || opts.Source == nil {
		return nil, errors.New("prefetch: Resolver, Cache and Source are required")
	}
	if opts.Workers <= 0 {
		opts.Workers = 32
	}
	if opts.PinFraction <= 0 || opts.PinFraction > 1 {
		opts.PinFraction = 0.5
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = DefaultMaxQueued
	}
	if opts.MaxJobFiles <= 0 {
		opts.MaxJobFiles = DefaultMaxJobFiles
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Engine{opts: opts, log: opts.Logger, tasks: map[string]*task{}, jobs: map[string]*jobState{},
		held: map[cache.Meta]*held{}, learners: map[string]*learner{}, running: map[*task]struct{}{}}
	e.cond = sync.NewCond(&e.mu)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for i := 0; i < opts.Workers; i++ {
		e.wg.Add(1)
		go e.worker()
	}
	return e, nil
}

// Close stops the workers and ends every pin. Queued work is dropped.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.cond.Broadcast()
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	e.mu.Lock()
	for _, t := range e.queue {
		t.state, t.err = hooks.Failed, errors.New("prefetch: daemon shutting down")
		e.endedLocked(t)
		close(t.done)
	}
	e.queue = nil
	var closing []*cache.Handle
	for _, j := range e.jobs {
		for rel, p := range j.pins {
			closing = e.unpinLocked(j, rel, p, closing)
		}
	}
	e.mu.Unlock()
	for _, h := range closing {
		h.Close()
	}
}

func taskKey(w hooks.Want) string {
	if len(w.Ranges) == 0 {
		return w.Rel
	}
	return fmt.Sprintf("%s@%v", w.Rel, w.Ranges)
}

// Prefetch implements hooks.Backend.
func (e *Engine) Prefetch(ctx context.Context, p hooks.Prefetch) ([]hooks.Result, error) {
	prio := p.Priority
	if prio <= 0 {
		// In-process requests (learned look-ahead, tests) carry no
		// priority; the scope's band comes from the hooks' one table.
		prio = p.Scope.Priority()
	}
	pinned := p.Job.ID != "" && (p.Scope == hooks.ScopeFrame || p.Scope == hooks.ScopeJob || p.Scope == hooks.ScopeMiss)
	ts := make([]*task, len(p.Wants))
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errors.New("prefetch: engine closed")
	}
	if err := e.admitLocked(p); err != nil {
		e.mu.Unlock()
		e.Refused.Add(int64(len(p.Wants)))
		return nil, err
	}
	var js *jobState
	var learned, taught []string
	if p.Job.ID != "" {
		js = e.job(p.Job.ID)
		if p.Scope == hooks.ScopeFrame && p.Frame != nil {
			taught, learned = e.frameStartedLocked(p.Job.ID, *p.Frame)
		}
	}
	for i, w := range p.Wants {
		if js != nil {
			if _, ok := js.wanted[w.Rel]; !ok {
				js.wanted[w.Rel] = 0
			}
		}
		k := taskKey(w)
		t := e.tasks[k]
		if t == nil {
			e.seq++
			t = &task{key: k, want: w, priority: prio, seq: e.seq, done: make(chan struct{}), cause: trace.SpanContextFromContext(ctx),
				who: cache.Asker{Job: p.Job.ID, Task: p.Job.Task, Band: string(p.Scope), PID: p.Job.PID}}
			e.tasks[k] = t
			heap.Push(&e.queue, t)
			e.cond.Signal()
		} else if t.index >= 0 && prio > t.priority {
			t.priority = prio
			heap.Fix(&e.queue, t.index)
		}
		if js != nil {
			t.pins = append(t.pins, pinReq{job: p.Job.ID, frame: p.Frame, pin: pinned})
		}
		ts[i] = t
	}
	var w *waitState
	if p.Wait > 0 {
		w = e.waitLocked(p, ts)
	}
	e.mu.Unlock()
	// Queued after this request's own files, a band below them.
	if len(taught) > 0 {
		e.learnNow(p.Job.ID, *p.Frame, taught)
	}
	if len(learned) > 0 {
		e.learnAhead(p.Job.ID, *p.Frame, learned)
	}

	if p.Wait > 0 {
		timer := time.NewTimer(p.Wait)
		defer timer.Stop()
	wait:
		for _, t := range ts {
			select {
			case <-t.done:
			case <-timer.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		e.mu.Lock()
		e.unwaitLocked(w)
		e.mu.Unlock()
	}
	res := make([]hooks.Result, len(ts))
	for i, t := range ts {
		select {
		case <-t.done:
			res[i] = hooks.Result{State: t.state}
			if t.err != nil {
				res[i].Err = t.err.Error()
			}
		default:
			res[i] = hooks.Result{State: hooks.Queued}
		}
	}
	return res, nil
}

// admitLocked refuses a request that would take the engine past its bounds
// (Options.MaxQueued, MaxJobFiles); it changes nothing.
func (e *Engine) admitLocked(p hooks.Prefetch) error {
	limit := e.opts.MaxQueued
	if p.Scope != hooks.ScopeFrame && p.Scope != hooks.ScopeMiss {
		limit = limit / 4 * 3
	}
	if len(e.tasks)+len(p.Wants) <= limit && p.Job.ID == "" {
		return nil // the common case costs no pass over the wants
	}
	added := 0
	for _, w := range p.Wants {
		if e.tasks[taskKey(w)] == nil {
			added++
		}
	}
	if len(e.tasks)+added > limit {
		return fmt.Errorf("%w: %d files are queued or being fetched and this %s request adds %d; %s requests may queue %d at most (retry when the queue drains, or ask for fewer files)",
			hooks.ErrBusy, len(e.tasks), p.Scope, added, p.Scope, limit)
	}
	if p.Job.ID == "" {
		return nil
	}
	j := e.jobs[p.Job.ID]
	if j == nil {
		if len(p.Wants) > e.opts.MaxJobFiles {
			return fmt.Errorf("%w: job %q would name %d files, more than %d; release the job's finished files or ask for fewer", hooks.ErrBusy, p.Job.ID, len(p.Wants), e.opts.MaxJobFiles)
		}
		return nil
	}
	fresh := 0
	for _, w := range p.Wants {
		if _, ok := j.wanted[w.Rel]; !ok {
			fresh++
		}
	}
	if len(j.wanted)+fresh > e.opts.MaxJobFiles {
		return fmt.Errorf("%w: job %q names %d files and this request adds %d, more than %d; release the job's finished files or ask for fewer", hooks.ErrBusy, p.Job.ID, len(j.wanted), fresh, e.opts.MaxJobFiles)
	}
	return nil
}

func (e *Engine) job(id string) *jobState {
	j := e.jobs[id]
	if j == nil {
		j = &jobState{id: id, wanted: map[string]int64{}, resident: map[string]bool{}, pins: map[string]*pin{}}
		e.jobs[id] = j
	}
	return j
}

func (e *Engine) worker() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		for len(e.queue) == 0 && !e.closed {
			e.cond.Wait()
		}
		if e.closed {
			e.mu.Unlock()
			return
		}
		t := heap.Pop(&e.queue).(*task)
		e.inFlight++
		t.started = time.Now()
		e.running[t] = struct{}{}
		e.mu.Unlock()

		h, meta, err := e.run(t)
		// Asked before taking mu: the cache's lock can wait behind another
		// open's disk I/O, and the FUSE open path takes mu (Observe).
		var size, limit int64
		if h != nil {
			size = h.Size()
			_, budget := e.opts.Cache.Used()
			limit = int64(float64(budget) * e.opts.PinFraction)
		}

		e.mu.Lock()
		e.inFlight--
		delete(e.tasks, t.key)
		delete(e.running, t)
		if e.sinceFree++; e.sinceFree >= freeAfter && len(e.queue) == 0 && e.inFlight == 0 {
			// A large burst of work just ended: hand its memory back now,
			// not over the runtime's next minutes of an idle daemon.
			e.sinceFree = 0
			e.freeMemory()
		}
		warn := false // logged after unlocking: a log write may block
		switch {
		case err == nil:
			t.state = hooks.Resident
		case errors.Is(err, fs.ErrNotExist):
			t.state, t.err = hooks.Missing, err
		case e.ctx.Err() != nil:
			// Shutting down: nothing failed, the work was abandoned.
			t.state, t.err = hooks.Failed, errors.New("prefetch: daemon shutting down")
		default:
			t.state, t.err, warn = hooks.Failed, err, true
		}
		t.size = size
		e.endedLocked(t)
		if t.state == hooks.Missing {
			e.Missing.Add(1)
		}
		for _, pr := range t.pins {
			j := e.jobs[pr.job]
			if j == nil {
				continue
			}
			if t.state == hooks.Missing {
				// Counted, not kept: a wide pattern of names that do not
				// exist must not grow the job's state.
				if _, ok := j.wanted[t.want.Rel]; ok {
					delete(j.wanted, t.want.Rel)
					j.missing++
				}
				continue
			}
			j.wanted[t.want.Rel] = t.size
			if t.state == hooks.Resident {
				j.resident[t.want.Rel] = true
			}
		}
		if h != nil && t.state == hooks.Resident {
			h = e.pinLocked(t, h, meta, size, limit)
		}
		e.mu.Unlock()
		if warn {
			e.log.Warn("prefetch failed", "path", t.want.Rel, "err", err)
		}
		// Closed before done, as a waiter may count on the file no longer
		// being held once its request returns; but outside mu (see
		// Observe).
		if h != nil {
			h.Close()
		}
		close(t.done)
	}
}

// run makes one task's file resident and returns its open handle and the
// generation it reads.
func (e *Engine) run(t *task) (*cache.Handle, cache.Meta, error) {
	ctx := cache.WithAsker(trace.ContextWithSpanContext(e.ctx, t.cause), t.who)
	meta, err := e.opts.Resolver.Resolve(ctx, t.want.Rel)
	if err != nil {
		return nil, meta, err
	}
	h, err := e.opts.Cache.Open(meta, e.opts.Source)
	if err != nil {
		return nil, meta, err
	}
	ranges := t.want.Ranges
	if len(ranges) == 0 {
		ranges = []hooks.Range{{Off: 0, Len: meta.Size}}
	}
	e.mu.Lock()
	e.sizedLocked(t, ranges, meta.Size, h.Arrived())
	e.mu.Unlock()
	// Ranges of one file are fetched concurrently: a trace of random
	// reads names hundreds, and one round trip each in turn would take
	// longer than the frame. The cache's prefetch byte budget bounds them.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, r := range ranges {
		g.Go(func() error {
			e.outstanding.Add(r.Len)
			defer e.outstanding.Add(-r.Len)
			_, err := h.Fetch(gctx, r.Off, r.Off+r.Len)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return h, meta, err
	}
	for _, r := range ranges {
		if !h.Resident(r.Off, r.Off+r.Len) {
			// Fetched but not stored: the cache disk is full or failing
			// (the cache logged it). Readers are still served from GCS.
			return h, meta, errors.New("prefetch: fetched but not stored (cache disk full or failing; see the log)")
		}
	}
	return h, meta, nil
}

// pinLocked keeps h, of generation m and size bytes, open for the jobs
// that asked for the file pinned, as far as the pin budget limit allows;
// it returns h when nobody keeps it, for the caller to close outside mu.
// It makes no cache call: a job pinning a generation another pin holds
// shares that handle.
func (e *Engine) pinLocked(t *task, h *cache.Handle, m cache.Meta, size, limit int64) *cache.Handle {
	for _, pr := range t.pins {
		j := e.jobs[pr.job]
		if j == nil || !pr.pin {
			continue
		}
		p := j.pins[t.want.Rel]
		if p == nil {
			if e.pinned+size > limit {
				e.PinRefusals.Add(1)
				continue
			}
			f := e.held[m]
			if f == nil {
				f = &held{h: h, meta: m}
				e.held[m] = f
				h = nil
			}
			f.refs++
			p = &pin{f: f, size: size, frames: map[int]bool{}}
			j.pins[t.want.Rel] = p
			j.pinned += size
			e.pinned += size
		}
		if pr.frame == nil {
			p.job = true
		} else {
			p.frames[*pr.frame] = true
		}
	}
	return h
}

// unpinLocked ends job j's pin p of rel. The file's handle is appended to
// closing when this was the last pin holding it, for the caller to close
// after releasing mu.
func (e *Engine) unpinLocked(j *jobState, rel string, p *pin, closing []*cache.Handle) []*cache.Handle {
	if p.f.refs--; p.f.refs == 0 {
		delete(e.held, p.f.meta)
		closing = append(closing, p.f.h)
	}
	delete(j.pins, rel)
	j.pinned -= p.size
	e.pinned -= p.size
	return closing
}

// Release implements hooks.Backend: a frame's or a job's pins end, and
// their files are evicted before others.
func (e *Engine) Release(ctx context.Context, r hooks.Release) error {
	var closing []*cache.Handle
	e.mu.Lock()
	defer func() {
		e.mu.Unlock()
		// Closed before Release returns, so a released file is evictable
		// when the hook hears back, but outside mu (see Observe).
		for _, h := range closing {
			h.Close()
		}
	}()
	j := e.jobs[r.Job]
	if j == nil {
		return nil
	}
	only := map[string]bool{}
	for _, rel := range r.Rels {
		only[rel] = true
	}
	for rel, p := range j.pins {
		if len(only) > 0 && !only[rel] {
			continue
		}
		if r.Scope == hooks.ScopeFrame {
			if r.Frame == nil || !p.frames[*r.Frame] {
				continue
			}
			delete(p.frames, *r.Frame)
			if p.job || len(p.frames) > 0 {
				continue
			}
		}
		// Evicted before others once nothing holds it. Demote only
		// flags the object, so it may run under mu.
		p.f.h.Demote()
		closing = e.unpinLocked(j, rel, p, closing)
	}
	if r.Scope == hooks.ScopeJob && len(only) == 0 {
		delete(e.jobs, r.Job)
		delete(e.learners, r.Job)
		if n := e.dropQueuedLocked(r.Job); n >= freeAfter {
			e.freeMemory()
		}
	}
	return nil
}

// freeAfter is how many dropped tasks make a release hand memory back to
// the OS at once, rather than over the runtime's next minutes.
const freeAfter = 10_000

// dropQueuedLocked removes the queued tasks that only the released job
// asked for; they end as failed ("released"), so a request still waiting
// on them returns. It returns how many it dropped.
func (e *Engine) dropQueuedLocked(job string) int {
	keep, n := e.queue[:0], 0
	for _, t := range e.queue {
		others := t.pins[:0]
		for _, pr := range t.pins {
			if pr.job != job {
				others = append(others, pr)
			}
		}
		if len(t.pins) > 0 && len(others) == 0 {
			t.pins, t.index = nil, -1
			t.state, t.err = hooks.Failed, errors.New("prefetch: the job was released before the file was fetched")
			e.endedLocked(t)
			delete(e.tasks, t.key)
			close(t.done)
			n++
			continue
		}
		t.pins = others
		keep = append(keep, t)
	}
	clear(e.queue[len(keep):])
	e.queue = keep
	heap.Init(&e.queue)
	return n
}

// freeMemory returns freed heap to the OS in the background, at most once
// every 10 s: after a release of a large queue the daemon's RSS falls back
// at once instead of staying at its peak.
func (e *Engine) freeMemory() {
	now := time.Now().UnixNano()
	last := e.lastFree.Load()
	if now-last < int64(10*time.Second) || !e.lastFree.CompareAndSwap(last, now) {
		return
	}
	go debug.FreeOSMemory()
}

// Status implements hooks.Backend.
func (e *Engine) Status() hooks.Status {
	c := e.opts.Cache
	used, budget := c.Used()
	hit, miss := c.Stats.HitBytes.Load(), c.Stats.MissBytes.Load()
	st := hooks.Status{
		BytesOutstanding: e.outstanding.Load(),
		PrefetchedBytes:  c.Stats.PrefetchedBytes.Load(),
		WastedBytes:      c.Stats.WastedPrefetchBytes.Load(),
		CacheUsedBytes:   used,
		CacheBudgetBytes: budget,
	}
	if hit+miss > 0 {
		st.HitRatio = float64(hit) / float64(hit+miss)
	}
	st.Waits = e.waitsStatus()
	e.mu.Lock()
	defer e.mu.Unlock()
	st.QueueDepth = int64(len(e.queue))
	st.InFlight = e.inFlight
	st.PinnedBytes = e.pinned
	st.LearnedPredicted, st.LearnedUsed = e.learnedPredicted, e.learnedUsed
	st.MissingFiles, st.RefusedFiles = e.Missing.Load(), e.Refused.Load()
	for _, j := range e.jobs {
		js := hooks.JobStatus{ID: j.id, Wanted: int64(len(j.wanted)), Resident: int64(len(j.resident)), PinnedBytes: j.pinned, Missing: j.missing}
		for rel, size := range j.wanted {
			js.BytesWanted += size
			if j.resident[rel] {
				js.BytesResident += size
			}
		}
		st.Jobs = append(st.Jobs, js)
	}
	sort.Slice(st.Jobs, func(a, b int) bool { return st.Jobs[a].ID < st.Jobs[b].ID })
	return st
}
