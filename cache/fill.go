package cache

import (
	"container/list"
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"
)

// tracer makes the fill spans. It is the global provider's: a daemon with
// tracing on sets one (telemetry.Setup); otherwise spans cost nothing.
var tracer = otel.Tracer("github.com/jitfs/jitfs/cache")

// fill is one fetch of a block-aligned byte range, shared by every reader
// that needs any of its blocks.
type fill struct {
	o          *Object
	start, end int64
	readAhead  bool
	// pfWeight is the prefetch byte budget the fill holds (Handle.Fetch);
	// 0 for reader and read-ahead fills.
	pfWeight int64
	pfSem    *semaphore.Weighted // what pfWeight was taken from
	done     chan struct{}       // closed when buf or err is set
	// stored is closed once the fill's bytes are on disk and present, or
	// the fill was dropped (error, eviction, disk failure): the point at
	// which residency is settled, which Handle.Fetch waits for.
	stored chan struct{}
	buf    []byte
	err    error
	// cause is the span of the operation that started the fill (a FUSE
	// read, a prefetch), linked from the fill's own span; who, whom it
	// started for, and since, when (Cache.Now).
	cause trace.SpanContext
	who   Asker
	since time.Time
	// got counts the bytes received so far, moved by the source as they
	// arrive (internal/progress), for Cache.Now.
	got atomic.Int64
	// memElem is the fill's place in the cache's memory LRU once the disk
	// refused its bytes and they are served from memory (guarded by
	// Cache.memMu).
	memElem *list.Element
}

// missingLocked reports whether block b must be fetched: not on disk, not
// being fetched, not held in memory.
func (o *Object) missingLocked(b int64) bool {
	return !o.has(b) && o.inflight[b] == nil && o.mem[b] == nil
}

// nextMissingLocked is the one block scan behind every decision of what to
// fetch: a read's (prepare), read-ahead's (readAhead) and the prefetch
// engine's (Handle.Fetch).
//
// Starting at block b, it passes over the blocks that cost no request:
// present on disk, held in memory, or being fetched. A fill in flight is
// passed over whole, after it is handed to onInflight (if not nil) so the
// caller can wait for it; this is exact because newFillLocked only claims
// blocks nobody is fetching and dropFillLocked releases a fill's blocks
// together. It returns the first missing block (see missingLocked) that
// starts before the byte offset limit as first, and as next the block after
// the run of missing blocks that begins there. The run ends before the
// first block that is not missing, or that starts at or past limit, or
// maxRun or more bytes after first starts (math.MaxInt64: no such bound).
// ok is false when no block starting before limit is missing.
func (o *Object) nextMissingLocked(b, limit, maxRun int64, onInflight func(*fill)) (first, next int64, ok bool) {
	bs := o.c.opts.BlockSize
	for b*bs < limit {
		if f := o.inflight[b]; f != nil {
			if onInflight != nil {
				onInflight(f)
			}
			b = (f.end + bs - 1) / bs
			continue
		}
		if o.missingLocked(b) {
			break
		}
		b++
	}
	if b*bs >= limit {
		return b, b, false
	}
	runEnd := limit
	if maxRun < limit-b*bs {
		runEnd = b*bs + maxRun
	}
	e := b + 1
	for e*bs < runEnd && o.missingLocked(e) {
		e++
	}
	return b, e, true
}

func (o *Object) startFillLocked(start, end int64, readAhead bool, cause trace.SpanContext, who Asker) *fill {
	f := o.newFillLocked(start, end, readAhead, cause, who)
	o.launchFillLocked(f)
	return f
}

// newFillLocked registers a fill for [start,end) as in flight.
func (o *Object) newFillLocked(start, end int64, readAhead bool, cause trace.SpanContext, who Asker) *fill {
	f := &fill{o: o, start: start, end: end, readAhead: readAhead, done: make(chan struct{}), stored: make(chan struct{}),
		cause: cause, who: who, since: time.Now()}
	bs := o.c.opts.BlockSize
	for b := start / bs; b < (end+bs-1)/bs; b++ {
		o.inflight[b] = f
	}
	return f
}

// launchFillLocked starts fetching a registered fill.
func (o *Object) launchFillLocked(f *fill) {
	o.c.wg.Add(1)
	go o.runFill(f)
}

// runFill fetches under the cache's context (never a reader's), hands the
// bytes to waiters, then persists them.
func (o *Object) runFill(f *fill) {
	defer o.c.wg.Done()
	defer close(f.stored)
	c := o.c
	// In flight from here, while it waits for a slot too, until its bytes
	// are stored or dropped.
	c.act.addFill(f)
	defer c.act.endFill(f)
	ctx := f.counted(c.ctx)
	if f.pfWeight > 0 {
		defer f.pfSem.Release(f.pfWeight)
	} else if f.readAhead {
		defer c.ra.Release(1)
	} else {
		if err := c.fg.Acquire(ctx, 1); err != nil {
			o.finishFill(f, nil, fmt.Errorf("cache: fill %s [%d,%d): %w", o.meta, f.start, f.end, err))
			return
		}
		defer c.fg.Release(1)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
	defer cancel()
	var links []trace.SpanStartOption
	if f.cause.IsValid() {
		links = append(links, trace.WithLinks(trace.Link{SpanContext: f.cause}))
	}
	ctx, span := tracer.Start(ctx, "jitfs.cache.fill", links...)
	defer span.End()
	if span.IsRecording() {
		kind := "read"
		switch {
		case f.pfSem == c.spec:
			kind = "speculation"
		case f.pfWeight > 0:
			kind = "prefetch"
		case f.readAhead:
			kind = "readahead"
		}
		span.SetAttributes(attribute.String("gcs.object", o.meta.Name), attribute.Int64("gcs.generation", o.meta.Gen),
			attribute.Int64("offset", f.start), attribute.Int64("length", f.end-f.start), attribute.String("cause", kind))
	}

	wholeObj := f.start == 0 && f.end == o.meta.Size
	buf := make([]byte, f.end-f.start)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		c.Stats.Fetches.Add(1)
		f.got.Store(0)
		err = o.src.ReadRange(ctx, o.meta.Name, o.meta.Gen, f.start, buf)
		if err != nil {
			break
		}
		c.Stats.FetchedBytes.Add(int64(len(buf)))
		if f.readAhead {
			c.Stats.ReadAheadBytes.Add(int64(len(buf)))
		}
		if !wholeObj || !o.meta.HasCRC32C || crc32.Checksum(buf, castagnoli) == o.meta.CRC32C {
			break
		}
		c.Stats.ChecksumMismatches.Add(1)
		reportMismatch(o.src, o.meta)
		err = fmt.Errorf("%w: %s: fetched bytes do not match the object's checksum", ErrChecksum, o.meta)
		c.log.Warn("cache: refetching object after checksum mismatch", "object", o.meta.String(), "attempt", attempt+1)
	}
	if err != nil {
		c.Stats.FetchErrors.Add(1)
		span.SetStatus(codes.Error, err.Error())
		o.finishFill(f, nil, fmt.Errorf("cache: fill %s [%d,%d): %w", o.meta, f.start, f.end, err))
		return
	}
	o.finishFill(f, buf, nil)
	o.persist(f, wholeObj)
}

func (o *Object) finishFill(f *fill, buf []byte, err error) {
	f.buf, f.err = buf, err
	close(f.done)
	if err != nil {
		o.mu.Lock()
		o.dropFillLocked(f)
		o.closeIfIdleLocked()
		o.mu.Unlock()
	}
}

func (o *Object) dropFillLocked(f *fill) {
	bs := o.c.opts.BlockSize
	for b := f.start / bs; b < (f.end+bs-1)/bs; b++ {
		if o.inflight[b] == f {
			delete(o.inflight, b)
		}
	}
}

// persist writes a fetched range to the data file and then records it in
// the journal; only then do its blocks count as present.
func (o *Object) persist(f *fill, verifiedWhole bool) {
	c := o.c
	o.mu.Lock()
	// The fill is still in o.inflight, so the files stay open until it is
	// dropped below.
	data, jnl := o.data, o.jnl
	if o.evicted {
		o.dropFillLocked(f)
		o.closeIfIdleLocked()
		o.mu.Unlock()
		return
	}
	if data == nil || jnl == nil {
		// The object's files could not be opened (memOnly) or its journal
		// could not be rewritten: the disk is not taking it.
		o.dropFillLocked(f)
		o.keepInMemLocked(f)
		o.closeIfIdleLocked()
		o.mu.Unlock()
		c.memAdd(f)
		return
	}
	o.mu.Unlock()

	crc := crc32.Checksum(f.buf, castagnoli)
	_, err := data.WriteAt(f.buf, f.start)
	if err == nil {
		rec := rangeLine(f.start, f.end, crc)
		if verifiedWhole {
			rec += completeLine
		}
		_, err = jnl.Write([]byte(rec))
	}

	o.mu.Lock()
	o.dropFillLocked(f)
	if err != nil && !o.evicted {
		// The bytes the write did get onto the disk before it failed are
		// allocated: count them, so eviction sees what the cache holds.
		delta := o.refreshBytesLocked(data)
		o.keepInMemLocked(f)
		o.closeIfIdleLocked()
		o.mu.Unlock()
		c.account(o, delta)
		c.diskError(o, f, err)
		c.memAdd(f)
		return
	}
	if o.evicted {
		o.closeIfIdleLocked()
		o.mu.Unlock()
		return
	}
	o.markPresentLocked(f.start, f.end)
	o.noteFetchedLocked(f.start, f.end, crc)
	if verifiedWhole && o.npresent == o.nblocks {
		o.complete = true
	}
	startVerify := o.npresent == o.nblocks && !o.complete && !o.completing
	if startVerify {
		o.completing = true
	}
	delta := o.refreshBytesLocked(data)
	o.closeIfIdleLocked()
	o.mu.Unlock()
	c.account(o, delta)
	if startVerify {
		c.wg.Add(1)
		go o.completeVerify()
	}
}

// refreshBytesLocked re-reads the data file's allocation and returns the
// change, for Cache.account.
func (o *Object) refreshBytesLocked(data *os.File) int64 {
	var st syscall.Stat_t
	if syscall.Fstat(int(data.Fd()), &st) != nil {
		return 0
	}
	delta := st.Blocks*512 - o.bytes
	o.bytes = st.Blocks * 512
	return delta
}

// keepInMemLocked serves a fill the disk refused from its buffer: its
// blocks are found in o.mem by later reads instead of being fetched again.
// The caller then hands it to Cache.memAdd, which bounds the bytes held.
func (o *Object) keepInMemLocked(f *fill) {
	bs := o.c.opts.BlockSize
	for b := f.start / bs; b < (f.end+bs-1)/bs; b++ {
		if !o.has(b) {
			o.mem[b] = f
		}
	}
}

// dropMemLocked forgets a fill held in memory.
func (o *Object) dropMemLocked(f *fill) {
	bs := o.c.opts.BlockSize
	for b := f.start / bs; b < (f.end+bs-1)/bs; b++ {
		if o.mem[b] == f {
			delete(o.mem, b)
		}
	}
}

var lastDiskWarn struct {
	sync.Mutex
	t time.Time
}

func (c *Cache) diskError(o *Object, f *fill, err error) {
	c.Stats.DiskErrors.Add(1)
	c.kickEviction()
	lastDiskWarn.Lock()
	defer lastDiskWarn.Unlock()
	if time.Since(lastDiskWarn.t) < 10*time.Second {
		return
	}
	lastDiskWarn.t = time.Now()
	args := []any{"object", o.meta.String(), "err", err, "disk_errors", c.Stats.DiskErrors.Load()}
	if f != nil {
		args = append(args, "offset", f.start, "length", f.end-f.start)
	}
	c.log.Warn("cache: cannot write to cache disk; serving from memory", args...)
}
