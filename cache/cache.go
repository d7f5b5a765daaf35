package cache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
)

// Source is what the cache needs of a remote store.
type Source interface {
	// ReadRange fills p with bytes [off, off+len(p)) of generation gen of
	// object name. It must not return partial results: on a nil error all
	// of p is valid. A generation that no longer exists must be reported
	// with an error that the caller can log; the cache does not retry.
	ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error
}

// MismatchReporter is a Source with more than one path to the bytes (a
// zone cache in front of GCS, *gcs.Client): the cache tells it of an
// object whose fetched bytes failed their CRC32C, so the refetch takes the
// path that is the authority rather than the one that may hold a corrupt
// copy.
type MismatchReporter interface {
	Mismatch(name string, gen int64)
}

func reportMismatch(src Source, m Meta) {
	if r, ok := src.(MismatchReporter); ok {
		r.Mismatch(m.Name, m.Gen)
	}
}

// ErrInUse is returned by New when another process holds the directory.
var ErrInUse = errors.New("cache: directory in use by another jitfs daemon")

// Meta identifies one object generation and what is needed to verify it.
type Meta struct {
	Bucket string `json:"bucket"`
	Name   string `json:"object"`
	Gen    int64  `json:"generation"`
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
	// HasCRC32C is false for objects GCS reports without a checksum; those
	// are served unverified (and counted).
	HasCRC32C bool `json:"has_crc32c"`
}

func (m Meta) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d", m.Bucket, m.Name, m.Gen)
	return hex.EncodeToString(h.Sum(nil))
}

func (m Meta) String() string { return fmt.Sprintf("gs://%s/%s#%d", m.Bucket, m.Name, m.Gen) }

// Stats are cumulative counters. All fields are safe to read concurrently.
type Stats struct {
	HitBytes, MissBytes    atomic.Int64 // bytes served from disk / from fresh fetches
	Hits, Misses, Partials atomic.Int64 // reads fully present / fully missing / mixed
	FetchedBytes, Fetches  atomic.Int64 // bytes and requests fetched from the Source
	ReadAheadBytes         atomic.Int64 // of FetchedBytes, fetched by read-ahead
	FetchErrors            atomic.Int64
	DiskErrors             atomic.Int64 // failed writes to the cache disk
	ChecksumMismatches     atomic.Int64 // whole-object or range CRC32C mismatches
	// LateMismatches are assembled objects that failed their CRC32C after
	// some of their bytes had been served (Options.Strict prevents them).
	LateMismatches          atomic.Int64
	Evictions, EvictedBytes atomic.Int64
	// MemoryBytes is what is held in memory now because the cache disk
	// refused it; MemoryHitBytes were served from there instead of being
	// fetched again.
	MemoryBytes, MemoryHitBytes atomic.Int64
	UnverifiedObjectsServed     atomic.Int64 // objects without CRC32C
	// PrefetchedBytes were fetched by Handle.Fetch (the prefetch engine);
	// WastedPrefetchBytes of them were evicted before any reader read
	// their object.
	PrefetchedBytes, WastedPrefetchBytes atomic.Int64
	// SpeculatedBytes were fetched by Handle.Speculate (fetching ahead of
	// readers that sent no hooks).
	SpeculatedBytes atomic.Int64
	// ReadBackChecks counts whole-object checks that read the object back
	// from the cache disk: those its fetched ranges did not cover (a
	// restart, a range fetched twice).
	ReadBackChecks atomic.Int64
}

// Cache is a budgeted, persistent cache of object generations on local disk.
type Cache struct {
	opts Options
	log  *slog.Logger
	dir  string // DIR/objects
	lock *os.File

	fg, ra *semaphore.Weighted
	pf     *semaphore.Weighted // bytes, for Handle.Fetch
	spec   *semaphore.Weighted // bytes, for Handle.Speculate

	// kept lists the closed objects whose files stay open, most recently
	// closed first (Options.KeepOpen). Lock order: keptMu alone, never
	// with an Object's mu held.
	keptMu sync.Mutex
	kept   *list.List
	keptAt map[*Object]*list.Element

	// mu guards the fields below. Lock order: mu, then Object.mu.
	mu      sync.Mutex
	objects map[string]*Object              // every object known: open, or on disk
	lru     *simplelru.LRU[string, *Object] // recency of objects with bytes on disk
	used    int64                           // bytes allocated on disk by data files
	closed  bool
	// tracked are the prefixes whose bytes are counted, by bucket
	// (usage.go); naming says the objects found at start are being named
	// (started by the first TrackPrefix), named that they all are.
	tracked map[string][]*PrefixUsage
	naming  bool
	named   atomic.Bool

	// memMu guards the memory LRU: fills the disk refused, served from
	// their buffers (Object.mem), most recently read at the front, at most
	// Options.MemoryBytes in all. Lock order: Object.mu, then memMu.
	memMu   sync.Mutex
	memLRU  *list.List
	memUsed int64

	evictKick chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
	// ctx parents every fill, so Close can stop them; readers' contexts
	// never cancel a fill.
	ctx    context.Context
	cancel context.CancelFunc

	// act records the fills in flight and the reads blocked on them
	// (now.go). Lock order: its lock alone; taken under Object.mu never.
	act activity

	Stats Stats
}

// New opens (or creates) a cache directory. It takes an exclusive lock on
// the directory so that two daemons cannot corrupt one cache, and indexes
// what earlier runs left there without reading any file contents.
func New(opts Options) (*Cache, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "objects"), 0o755); err != nil {
		return nil, fmt.Errorf("cache: create %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	lru, _ := simplelru.NewLRU[string, *Object](1<<62, nil)
	c := &Cache{
		opts:      opts,
		log:       opts.Logger,
		dir:       filepath.Join(opts.Dir, "objects"),
		lock:      lock,
		fg:        semaphore.NewWeighted(int64(opts.Fetches)),
		ra:        semaphore.NewWeighted(int64(opts.ReadAheadFetches)),
		pf:        semaphore.NewWeighted(opts.PrefetchBytes),
		spec:      semaphore.NewWeighted(opts.SpeculationBytes),
		kept:      list.New(),
		keptAt:    map[*Object]*list.Element{},
		objects:   map[string]*Object{},
		lru:       lru,
		memLRU:    list.New(),
		evictKick: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	start := time.Now()
	if err := c.scan(); err != nil {
		lock.Close()
		return nil, err
	}
	c.log.Info("cache ready", "dir", opts.Dir, "objects", c.lru.Len(), "used_bytes", c.used,
		"budget_bytes", opts.Budget, "startup", time.Since(start).Round(time.Millisecond))
	c.wg.Add(1)
	go c.evictLoop()
	c.kickEviction()
	return c, nil
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (held by pid %s)", ErrInUse, dir, strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("cache: lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// scan indexes the objects on disk, oldest first by data-file mtime (which
// Open refreshes), without opening any of them.
func (c *Cache) scan() error {
	var all []scanned
	shards, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("cache: scan %s: %w", c.dir, err)
	}
	var names []string
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		names = append(names, sh.Name())
	}
	// Shards are scanned in parallel: a node restarting over 100,000
	// cached objects spends its start-up in these stats.
	found := make([][]scanned, len(names))
	var g errgroup.Group
	g.SetLimit(4 * runtime.NumCPU())
	for i, name := range names {
		g.Go(func() error {
			var err error
			found[i], err = scanShard(filepath.Join(c.dir, name))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, f := range found {
		all = append(all, f...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, f := range all {
		o := c.newObject(f.key, Meta{})
		o.bytes = f.bytes
		o.u.bytes = f.bytes
		c.objects[f.key] = o
		c.lru.Add(f.key, o)
		c.used += f.bytes
	}
	return nil
}

// scanned is one object found on disk at start.
type scanned struct {
	key   string
	bytes int64
	mtime time.Time
}

// scanShard indexes one shard directory, removing what was never valid.
func scanShard(sdir string) ([]scanned, error) {
	d, err := os.Open(sdir)
	if err != nil {
		return nil, fmt.Errorf("cache: scan %s: %w", sdir, err)
	}
	defer d.Close()
	// Unsorted, and stat relative to the directory: no path walks.
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("cache: scan %s: %w", sdir, err)
	}
	journals := map[string]bool{}
	var datas []string
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".jnl"):
			journals[strings.TrimSuffix(n, ".jnl")] = true
		case strings.HasSuffix(n, ".data"):
			datas = append(datas, strings.TrimSuffix(n, ".data"))
		case strings.HasSuffix(n, ".tmp"):
			os.Remove(filepath.Join(sdir, n))
		}
	}
	var out []scanned
	for _, k := range datas {
		if !journals[k] {
			// Data without a journal was never recorded as valid.
			os.Remove(filepath.Join(sdir, k+".data"))
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), k+".data", &st, 0); err != nil {
			continue
		}
		out = append(out, scanned{k, st.Blocks * 512, time.Unix(st.Mtim.Unix())})
		delete(journals, k)
	}
	for k := range journals {
		// A journal without data holds only a header: keep it indexed at
		// zero bytes so eviction can remove it.
		out = append(out, scanned{key: k})
	}
	return out, nil
}

func (c *Cache) paths(key string) (data, jnl string) {
	base := filepath.Join(c.dir, key[:2], key)
	return base + ".data", base + ".jnl"
}

// closeGrace is how long Close lets fetches in flight finish.
const closeGrace = 3 * time.Second

// Open returns a handle for reading one object generation. The handle pins
// the object against eviction until Close.
func (c *Cache) Open(m Meta, src Source) (*Handle, error) {
	if m.Size < 0 {
		return nil, fmt.Errorf("cache: %s: negative size", m)
	}
	key := m.key()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("cache: closed")
	}
	o := c.objects[key]
	if o == nil {
		o = c.newObject(key, m)
		c.objects[key] = o
	}
	c.nameLocked(o, m.Bucket, m.Name)
	c.lru.Get(key) // recency
	o.mu.Lock()
	o.refs++
	if o.meta.Name == "" {
		// Indexed at startup by key alone; the first Open names it.
		o.meta = m
	}
	if o.src == nil {
		o.src = src
	}
	o.mu.Unlock()
	c.mu.Unlock()

	if err := o.open(); err != nil {
		o.release()
		return nil, err
	}
	return &Handle{o: o}, nil
}

// Used returns the bytes the cache occupies on disk and the budget.
func (c *Cache) Used() (used, budget int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.opts.Budget
}

// ResidentBytes returns the bytes of object generation m the cache holds
// on disk (0 when none), without opening it: a node's status sums it over
// every file a job has pinned.
func (c *Cache) ResidentBytes(m Meta) int64 {
	c.mu.Lock()
	o := c.objects[m.key()]
	c.mu.Unlock()
	if o == nil {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// Len returns the number of object generations indexed.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// account records a change of an object's bytes on disk.
func (c *Cache) account(o *Object, delta int64) {
	c.mu.Lock()
	c.used += delta
	c.usageAddLocked(o, delta)
	if !c.lru.Contains(o.key) {
		c.lru.Add(o.key, o)
	}
	over := c.used > int64(float64(c.opts.Budget)*c.opts.HighWater)
	c.mu.Unlock()
	if over {
		c.kickEviction()
	}
}

// memAdd starts bounding a fill kept in memory (Object.keepInMemLocked),
// pushing out the least recently read fills past Options.MemoryBytes.
func (c *Cache) memAdd(f *fill) {
	c.memMu.Lock()
	var victims []*fill
	if f.memElem == nil {
		f.memElem = c.memLRU.PushFront(f)
		c.memUsed += int64(len(f.buf))
	}
	for c.memUsed > c.opts.MemoryBytes && c.memLRU.Len() > 0 {
		v := c.memLRU.Remove(c.memLRU.Back()).(*fill)
		v.memElem = nil
		c.memUsed -= int64(len(v.buf))
		victims = append(victims, v)
	}
	c.Stats.MemoryBytes.Store(c.memUsed)
	c.memMu.Unlock()
	for _, v := range victims {
		v.o.mu.Lock()
		v.o.dropMemLocked(v)
		v.o.mu.Unlock()
	}
}

// memTouch marks a fill held in memory as just read. Called with the
// fill's Object.mu held.
func (c *Cache) memTouch(f *fill) {
	c.memMu.Lock()
	if f.memElem != nil {
		c.memLRU.MoveToFront(f.memElem)
	}
	c.memMu.Unlock()
}

// memRemove stops holding fills of an object that is gone (evicted).
func (c *Cache) memRemove(fills []*fill) {
	c.memMu.Lock()
	for _, f := range fills {
		if f.memElem != nil {
			c.memLRU.Remove(f.memElem)
			f.memElem = nil
			c.memUsed -= int64(len(f.buf))
		}
	}
	c.Stats.MemoryBytes.Store(c.memUsed)
	c.memMu.Unlock()
}

func (c *Cache) kickEviction() {
	select {
	case c.evictKick <- struct{}{}:
	default:
	}
}

func (c *Cache) evictLoop() {
	defer c.wg.Done()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.evictKick:
		case <-tick.C:
		}
		c.evict()
	}
}

// evict removes least-recently-used objects that nobody has open until
// usage is below the low watermark.
func (c *Cache) evict() {
	c.mu.Lock()
	high := int64(float64(c.opts.Budget) * c.opts.HighWater)
	low := int64(float64(c.opts.Budget) * c.opts.LowWater)
	if c.used <= high {
		c.mu.Unlock()
		return
	}
	var victims []*Object
	// Objects a job released go first, then least recently used.
	keys := c.lru.Keys()
	order := make([]string, 0, len(keys))
	for _, k := range keys {
		if o, _ := c.lru.Peek(k); o != nil && o.evictFirst.Load() {
			order = append(order, k)
		}
	}
	for _, k := range keys {
		if o, _ := c.lru.Peek(k); o != nil && !o.evictFirst.Load() {
			order = append(order, k)
		}
	}
	for _, k := range order {
		if c.used <= low {
			break
		}
		o, _ := c.lru.Peek(k)
		o.mu.Lock()
		if o.refs > 0 || len(o.inflight) > 0 {
			o.mu.Unlock()
			continue
		}
		o.evicted = true
		c.used -= o.bytes
		if o.prefetched > 0 && !o.read.Load() {
			c.Stats.WastedPrefetchBytes.Add(o.prefetched)
		}
		victims = append(victims, o)
		o.mu.Unlock()
		c.usageDropLocked(o)
		c.lru.Remove(k)
		delete(c.objects, k)
	}
	pinnedOver := c.used > high
	c.mu.Unlock()

	var freed int64
	var memFills []*fill
	for _, o := range victims {
		o.mu.Lock()
		freed += o.bytes
		for _, f := range o.mem {
			memFills = append(memFills, f)
		}
		clear(o.mem)
		o.closeFilesLocked()
		data, jnl := c.paths(o.key)
		// Journal first: data without a journal is never trusted.
		if err := os.Remove(jnl); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: evict: remove journal", "path", jnl, "err", err)
		}
		if err := os.Remove(data); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: evict: remove data", "path", data, "err", err)
		}
		o.mu.Unlock()
	}
	c.memRemove(memFills)
	if len(victims) > 0 {
		c.Stats.Evictions.Add(int64(len(victims)))
		c.Stats.EvictedBytes.Add(freed)
		c.log.Debug("cache: evicted", "objects", len(victims), "bytes", freed)
	}
	if pinnedOver {
		c.log.Warn("cache: over budget with every remaining object open; eviction resumes as files close",
			"budget_bytes", c.opts.Budget)
	}
}

// Close stops background work and releases the directory lock. Fills in
// flight finish or time out on their own; their results are discarded.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	objs := make([]*Object, 0, len(c.objects))
	for _, o := range c.objects {
		objs = append(objs, o)
	}
	c.mu.Unlock()
	close(c.done)
	// Let fetches in flight finish and persist for a moment before
	// cancelling them: a clean restart then keeps what the kernel's
	// read-ahead and the prefetch engine were fetching at the time.
	idle := make(chan struct{})
	go func() { c.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(closeGrace):
		c.cancel()
		<-idle
	}
	c.cancel()
	for _, o := range objs {
		o.mu.Lock()
		o.closeFilesLocked()
		o.mu.Unlock()
	}
	return c.lock.Close()
}

// keepOpen records that o, just closed, keeps its files open, and closes
// the files of the least recently closed past Options.KeepOpen. Called
// without o.mu: a victim's mu is taken after keptMu is released.
func (c *Cache) keepOpen(o *Object) {
	var victims []*Object
	c.keptMu.Lock()
	if e, ok := c.keptAt[o]; ok {
		c.kept.MoveToFront(e)
	} else {
		c.keptAt[o] = c.kept.PushFront(o)
	}
	for c.kept.Len() > c.opts.KeepOpen {
		v := c.kept.Remove(c.kept.Back()).(*Object)
		delete(c.keptAt, v)
		victims = append(victims, v)
	}
	c.keptMu.Unlock()
	for _, v := range victims {
		v.mu.Lock()
		// Reopened meanwhile: its next release keeps it again.
		v.closeIfIdleLocked()
		v.mu.Unlock()
	}
}
