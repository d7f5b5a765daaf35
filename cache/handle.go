package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Handle is one open file's view of an object. ReadAt is safe for
// concurrent use (the kernel sends parallel reads on one open file); Close
// must be called once, after the last ReadAt.
type Handle struct {
	o *Object

	// mu guards the sequential-read detection below: the current run of
	// reads, each within ReorderWindow of the run's furthest end.
	mu       sync.Mutex
	runStart int64 // lowest offset read in the run
	runEnd   int64 // high-water mark: the furthest end read in the run
	runBytes int64 // bytes read in the run, re-reads included
	raIssued int64 // read-ahead has been started up to here

	// reader names who opened the handle (SetReader), for the log line of
	// a late mismatch; readerID deduplicates it (0: unnamed).
	reader   string
	readerID uint32
	// servedUnverified: the handle was served bytes of the object before
	// the object's CRC32C was checked, in epoch servedEpoch (guarded by
	// Object.mu). If the object later fails its check, the epoch moves on
	// and the handle's reads fail.
	servedUnverified bool
	servedEpoch      int64
	// asker is whom the handle's reads are for (SetAsker), when their
	// context names no one.
	asker Asker
}

// SetAsker names whom the handle's reads are for (Cache.Now): set once at
// open, so the FUSE read path adds nothing to its context per read.
func (h *Handle) SetAsker(a Asker) { h.asker = a }

// MayServeUnchecked reports whether reads may be served bytes the object's
// CRC32C has not covered yet: a large object not yet complete, outside
// strict mode. The FUSE layer names the reader (SetReader) only then.
func (h *Handle) MayServeUnchecked() bool {
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.complete && o.meta.HasCRC32C && o.meta.Size > o.c.opts.WholeObjectMax && !o.c.opts.Strict
}

// Resets counts the times the object's cached bytes were found wrong and
// dropped (a CRC32C mismatch). Bytes a reader was served before such a
// reset may sit in the kernel's page cache: an open that sees the count
// move must not keep those pages.
func (h *Handle) Resets() int64 {
	h.o.mu.Lock()
	defer h.o.mu.Unlock()
	return h.o.resets
}

// SetReader names who reads through the handle (the FUSE layer gives the
// opening process's pid and command), so a checksum mismatch found after
// bytes were served can say whose reads it affected. id deduplicates
// readers of one object; call it before the first read.
func (h *Handle) SetReader(id uint32, name string) { h.readerID, h.reader = id, name }

// sequentialLocked folds a read of [off,end) into the handle's run and
// returns how many bytes the run has read in sequence; 0 means the reader
// looks random.
//
// A read continues the run if it lands within ReorderWindow of the run's
// furthest end, before or after it: the kernel issues one open file's reads
// in parallel, so a sequential reader's reads arrive shuffled (0, 256K,
// 128K, 384K, ...), and demanding off == previous end took nearly every
// read for a random one. A read further away is a jump and starts a new run,
// so random reads keep fetching single blocks.
//
// The run's size is the bytes read in it, but never more than its span, so
// re-reading one region does not make the handle look like a long
// sequential reader.
func (h *Handle) sequentialLocked(off, end int64) int64 {
	win := h.o.c.opts.ReorderWindow
	switch {
	case off >= h.runEnd-win && off <= h.runEnd+win:
		h.runStart = min(h.runStart, off)
		h.runEnd = max(h.runEnd, end)
		h.runBytes += end - off
	case off >= h.runStart && off < h.runEnd && h.runBytes >= win:
		// A straggler: a read from inside a long run that arrives after the
		// run has moved more than the window on (its thread was descheduled,
		// or a FUSE request was slow to be served). The run fetched its
		// bytes already; it neither extends nor ends the run.
	case off == 0:
		// The start of the file is where a sequential pass most likely
		// begins, whatever the handle read before.
		h.runStart, h.runEnd, h.runBytes, h.raIssued = 0, end, end, 0
	default:
		// A jump: this read is random; a run may start right after it.
		h.runStart, h.runEnd, h.runBytes, h.raIssued = end, end, 0, 0
	}
	return min(h.runBytes, h.runEnd-h.runStart)
}

// Meta returns the object generation this handle reads.
func (h *Handle) Meta() Meta {
	h.o.mu.Lock()
	defer h.o.mu.Unlock()
	return h.o.meta
}

// BackingFile is the object's data file opened read-only, for FUSE
// passthrough. It succeeds only for complete, verified objects. The file
// is the object's, shared by every handle and valid while the handle is
// open: the caller must not close it.
func (h *Handle) BackingFile() (*os.File, bool) {
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.complete || len(o.unverified) > 0 || o.meta.Size == 0 || o.evicted {
		return nil, false
	}
	if o.ro == nil {
		data, _ := o.c.paths(o.key)
		f, err := os.Open(data)
		if err != nil {
			return nil, false
		}
		o.ro = f
	}
	return o.ro, true
}

// AwaitLocal waits, when every byte of the object has arrived and what is
// left is writing the last ranges to the cache disk and the whole-object
// check, until that is done (or ctx ends, or limit has passed), and reports
// whether the object
// is then complete and verified. It never waits on the network: an object
// with bytes still to fetch returns false at once. An open right after a
// cold fill then gets passthrough instead of going through the daemon for
// as long as it stays open.
func (h *Handle) AwaitLocal(ctx context.Context, limit time.Duration) bool {
	o := h.o
	// The timer is made only once there is something to wait for: most
	// opens find the object complete, and the open path stays free of it.
	var timeout <-chan time.Time
	for {
		o.mu.Lock()
		if o.complete {
			ok := len(o.unverified) == 0
			o.mu.Unlock()
			return ok
		}
		var wait <-chan struct{}
		switch {
		case o.completing:
			if o.verifyWait == nil {
				o.verifyWait = make(chan struct{})
			}
			wait = o.verifyWait
		case o.data == nil || o.npresent+int64(len(o.inflight)) < o.nblocks:
			o.mu.Unlock()
			return false // blocks nobody is fetching
		default:
			for _, f := range o.inflight {
				select {
				case <-f.done:
					if wait == nil {
						wait = f.stored // arrived, being written
					}
					continue
				default:
				}
				o.mu.Unlock()
				return false // still on the network
			}
		}
		o.mu.Unlock()
		if wait == nil {
			return false
		}
		if timeout == nil {
			t := time.NewTimer(limit)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wait:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Outcome says where a read's bytes came from.
type Outcome uint8

const (
	// Hit: every byte came from the cache disk.
	Hit Outcome = iota + 1
	// Partial: some bytes were cached, the rest waited on a fetch.
	Partial
	// Miss: every byte waited on a fetch.
	Miss
)

func (o Outcome) String() string {
	switch o {
	case Hit:
		return "hit"
	case Partial:
		return "partial"
	case Miss:
		return "miss"
	}
	return ""
}

// ReadInfo describes one read, for traces and metrics.
type ReadInfo struct {
	Outcome Outcome
	// Fetched is the number of the read's bytes that waited on a GCS fetch
	// (shared fetches count for every reader that waited on them).
	Fetched int64
}

// ReadAt reads len(p) bytes at off (fewer at the end of the object). It
// waits only as long as ctx allows; a cancelled reader returns ctx.Err()
// while the fetch it was waiting for completes for the others.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, _, err := h.ReadAtInfo(ctx, p, off)
	return n, err
}

// ReadAtInfo is ReadAt that also reports where the bytes came from.
func (h *Handle) ReadAtInfo(ctx context.Context, p []byte, off int64) (int, ReadInfo, error) {
	o := h.o
	c := o.c
	size := o.meta.Size
	if off >= size || len(p) == 0 {
		return 0, ReadInfo{Outcome: Hit}, nil
	}
	end := min(off+int64(len(p)), size)

	// Sequential readers are detected per handle. Fetch size and read-ahead
	// grow with the bytes read in sequence so far (as the kernel's own
	// read-ahead does), so reading the header of a big file (a linked
	// library, an EXR) does not pull megabytes it never reads, while a
	// reader of a whole large file soon has ReadAheadParts parts in flight.
	// Read-ahead runs from the run's furthest end, not this read's: with
	// reads arriving out of order, this one may be behind.
	h.mu.Lock()
	seq := h.sequentialLocked(off, end)
	fetchMin := c.opts.BlockSize
	var raFrom, raTo int64
	if seq > 0 {
		fetchMin = max(fetchMin, min(c.opts.PartSize, seq))
		window := min(int64(c.opts.ReadAheadParts)*c.opts.PartSize, seq)
		if seq >= 4*c.opts.BlockSize && h.runEnd+window > h.raIssued+window/2 {
			raFrom, raTo = max(h.runEnd, h.raIssued), h.runEnd+window
			if ps := c.opts.PartSize; window >= ps {
				// Once a whole part is worth reading ahead, stop on a part
				// boundary, so the next read-ahead starts on one and every
				// request is a whole part rather than a part cut in two.
				raTo = raTo / ps * ps
			}
			if raTo > raFrom {
				h.raIssued = raTo
			}
		}
	}
	h.mu.Unlock()

	var stack [8]segment
	cause := trace.SpanContextFromContext(ctx)
	who := askerOf(ctx)
	if who == (Asker{}) {
		who = h.asker
	}
	waited := false
	if c.opts.Strict && o.meta.HasCRC32C && size > c.opts.WholeObjectMax {
		var err error
		if waited, err = h.awaitVerified(ctx); err != nil {
			return 0, ReadInfo{}, err
		}
		raTo = raFrom // the whole object is on disk
	}
	segs, err := o.prepare(h, off, end, fetchMin, stack[:0], cause, who)
	if err != nil {
		return 0, ReadInfo{}, err
	}
	if raTo > raFrom {
		if got := o.readAhead(raFrom, raTo, cause, who); got < raTo {
			// Out of read-ahead slots (other files are being read ahead):
			// a later read of this run retries from where it stopped,
			// unless another read has moved raIssued since.
			h.mu.Lock()
			if h.raIssued == raTo {
				h.raIssued = got
			}
			h.mu.Unlock()
		}
	}

	var fromDisk, fromFill, fromMem int64
	// blocked records the read while it waits for a fill (Cache.Now): only
	// a read that finds its bytes still on the way pays for it.
	var blocked *blockedRead
	defer func() { c.act.unblock(blocked) }()
	for _, s := range segs {
		dst := p[s.start-off : s.end-off]
		if s.f == nil {
			if _, err := o.readData(dst, s.start); err != nil {
				return 0, ReadInfo{}, err
			}
			fromDisk += int64(len(dst))
			continue
		}
		select {
		case <-s.f.done:
		default:
			blocked = c.act.block(blocked, o, off, end-off, s.f, who)
			select {
			case <-s.f.done:
			case <-ctx.Done():
				return 0, ReadInfo{}, ctx.Err()
			}
		}
		if s.f.err != nil {
			return 0, ReadInfo{}, s.f.err
		}
		copy(dst, s.f.buf[s.start-s.f.start:])
		if s.mem {
			fromMem += int64(len(dst))
		} else {
			fromFill += int64(len(dst))
		}
	}
	if !o.read.Load() {
		o.read.Store(true)
	}
	if o.evictFirst.Load() {
		o.evictFirst.Store(false)
	}
	info := ReadInfo{Fetched: fromFill}
	switch {
	case waited:
		// Strict: the read waited for the whole object to be fetched and
		// verified, then was served from disk.
		c.Stats.Misses.Add(1)
		info.Outcome, info.Fetched = Miss, end-off
	case fromFill == 0:
		c.Stats.Hits.Add(1)
		info.Outcome = Hit
	case fromDisk == 0:
		c.Stats.Misses.Add(1)
		info.Outcome = Miss
	default:
		c.Stats.Partials.Add(1)
		info.Outcome = Partial
	}
	c.Stats.HitBytes.Add(fromDisk)
	c.Stats.MemoryHitBytes.Add(fromMem)
	c.Stats.MissBytes.Add(fromFill)
	return int(end - off), info, nil
}

func (o *Object) readData(dst []byte, off int64) (int, error) {
	o.mu.Lock()
	f := o.data
	o.mu.Unlock()
	if f == nil {
		return 0, os.ErrClosed
	}
	return f.ReadAt(dst, off)
}

// Close releases the handle's pin on the object.
func (h *Handle) Close() {
	if h.o != nil {
		h.o.release()
		h.o = nil
	}
}

// ErrNotStored is returned by strict reads (Options.Strict) of an object the
// cache disk could not store whole, so it could not be verified.
var ErrNotStored = errors.New("cache: strict verification: the object could not be stored whole on the cache disk (full or failing), so it cannot be checked before it is served")

// awaitVerified makes the whole object present and verified before a strict
// read is served: it fetches what is missing (sharing fills with other
// readers and the prefetch engine) and waits for the whole-object check. A
// mismatch discards the object and fetches it once more; a second mismatch
// fails the read. It reports whether the read had to wait.
func (h *Handle) awaitVerified(ctx context.Context) (bool, error) {
	o := h.o
	// Its fetches are the reader's, though drawn on the prefetch budget.
	who := askerOf(ctx)
	who.Band = BandRead
	ctx = WithAsker(ctx, who)
	for attempt := 0; ; attempt++ {
		o.mu.Lock()
		if o.complete && len(o.unverified) == 0 {
			o.mu.Unlock()
			return attempt > 0, nil
		}
		resets := o.resets
		o.mu.Unlock()
		if attempt == 2 {
			return true, fmt.Errorf("%w: %s: fetched twice, failed its CRC32C both times", ErrChecksum, o.meta)
		}
		if _, err := h.Fetch(ctx, 0, o.meta.Size); err != nil {
			return true, err
		}
		o.mu.Lock()
		if o.complete {
			o.mu.Unlock()
			return true, nil
		}
		if !o.completing {
			failed := o.resets != resets
			o.mu.Unlock()
			if failed {
				continue // checked meanwhile and discarded: fetch again
			}
			// Fetch returned, yet not every block is on disk and no check
			// runs: the disk refused some of them.
			return true, fmt.Errorf("%w: %s", ErrNotStored, o.meta)
		}
		if o.verifyWait == nil {
			o.verifyWait = make(chan struct{})
		}
		ch := o.verifyWait
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}
