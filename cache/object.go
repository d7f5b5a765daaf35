package cache

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrChecksum reports bytes from the Source that do not match the object's
// CRC32C; they are never served.
var ErrChecksum = errors.New("cache: CRC32C mismatch")

// Object is the cache's state for one object generation.
type Object struct {
	c   *Cache
	key string
	src Source // set at creation or first Open; immutable while refs > 0

	// mu guards everything below. Lock order: Cache.mu, then mu.
	mu      sync.Mutex
	meta    Meta
	refs    int  // open handles; an object with refs > 0 is never evicted
	evicted bool // files removed; results of late fills are dropped
	// loaded: the presence state below has been read from the journal (or
	// the journal started afresh). It outlives the files: a reopened object
	// trusts what this process wrote and does not re-read its journal.
	loaded bool
	// data and jnl are open only while the object is in use: refs > 0, a
	// fill in flight, or a whole-object verification running, or while a
	// complete object is among the Options.KeepOpen most recently closed
	// (INVARIANT: otherwise both are nil). A daemon that has read 100k
	// files must not hold 200k descriptors; one that reopens the same
	// files frame after frame should not pay four system calls per open.
	data, jnl *os.File
	// ro is the data file opened read-only for FUSE passthrough, shared by
	// every handle (the kernel keeps its own reference once registered);
	// closed with data.
	ro         *os.File
	present    []uint64 // bitset over blocks
	nblocks    int64
	npresent   int64
	unverified []span
	// fetched are the ranges this process fetched and wrote, sorted, each
	// with the CRC32C of its bytes as they arrived: when they tile the
	// object, its whole CRC32C is their combination and the check reads
	// nothing back (nil once complete; past maxFetchedSpans, not kept).
	fetched     []span
	fetchedFull bool
	complete    bool // every block present and the whole object verified
	completing  bool
	// verifyWait, when set, is closed when the running whole-object
	// verification ends (either way): strict readers wait on it.
	verifyWait chan struct{}
	// epoch counts late mismatches: an assembled object that failed its
	// CRC32C after some of its bytes had been served. A handle that served
	// unverified bytes in an earlier epoch fails its next read.
	epoch int64
	// resets counts resetLocked calls (checksum failures), so a strict
	// reader can tell a failed check from a disk that refused bytes.
	resets int64
	// readers names the handles (Handle.SetReader) that were served bytes
	// of the object before it was verified whole, for the log line of a
	// late mismatch; at most maxReaders, the rest counted in moreReaders.
	readers     []string
	readerIDs   map[uint32]bool
	moreReaders int
	inflight    map[int64]*fill // block index -> fill covering it
	// mem holds fills whose bytes the cache disk refused (full, failing):
	// block index -> fill, served from its buffer until the memory budget
	// (Options.MemoryBytes) pushes it out. Without it every read of a
	// block that could not be stored would fetch it again.
	mem map[int64]*fill
	// memOnly: the object's files could not be created or opened (the
	// disk is full or failing). It is read through fills and mem alone;
	// the next open tries the disk again.
	memOnly bool
	bytes   int64 // bytes allocated on disk by the data file
	// u is the object's part in the per-prefix counters (usage.go),
	// guarded by Cache.mu.
	u       objUsage
	touched time.Time
	// prefetched counts bytes fetched for the prefetch engine rather than a
	// reader; read records whether a reader has since read the object, so
	// eviction can count prefetches that were never used (waste).
	prefetched int64
	read       atomic.Bool
	// evictFirst: a job released this object and no reader has read it
	// since; eviction takes it before others.
	evictFirst atomic.Bool
}

func (c *Cache) newObject(key string, m Meta) *Object {
	return &Object{c: c, key: key, meta: m, inflight: map[int64]*fill{}, mem: map[int64]*fill{}}
}

func (o *Object) has(b int64) bool { return o.present[b>>6]&(1<<(b&63)) != 0 }
func (o *Object) set(b int64) {
	if !o.has(b) {
		o.present[b>>6] |= 1 << (b & 63)
		o.npresent++
	}
}

func (o *Object) clearPresence() {
	clear(o.present)
	o.npresent = 0
	o.unverified = nil
	o.complete = false
	o.fetched, o.fetchedFull = nil, false
}

// maxFetchedSpans bounds the ranges remembered per object (24 bytes each).
const maxFetchedSpans = 1 << 14

// noteFetchedLocked remembers a range written to the data file.
func (o *Object) noteFetchedLocked(start, end int64, crc uint32) {
	if o.fetchedFull {
		return
	}
	if len(o.fetched) >= maxFetchedSpans {
		o.fetched, o.fetchedFull = nil, true
		return
	}
	i, _ := slices.BinarySearchFunc(o.fetched, start, func(s span, at int64) int { return cmp.Compare(s.start, at) })
	o.fetched = slices.Insert(o.fetched, i, span{start, end, crc})
}

// open loads the journal on first use, opens the object's files if they
// were closed while it was idle, and verifies a complete object that an
// earlier run left, so passthrough never hands the kernel unchecked bytes.
//
// A cache disk that cannot take the object (full, read-only, failing) does
// not fail the open: the object is read from fetches held in memory, and
// the condition is logged and counted like any other disk error.
func (o *Object) open() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.loaded {
		err := o.loadLocked()
		if o.present == nil {
			return err // not a disk error: the object could not even be sized
		}
		o.loaded = true
		if err != nil {
			o.goMemOnlyLocked(err)
			return nil
		}
	}
	if o.data == nil && o.meta.Size > 0 {
		if err := o.openFilesLocked(); err != nil {
			o.goMemOnlyLocked(err)
			return nil
		}
		o.memOnly = false
	}
	if o.meta.Size > 0 && time.Since(o.touched) > time.Minute {
		// The data file's mtime orders eviction after a restart.
		now := time.Now()
		data, _ := o.c.paths(o.key)
		_ = os.Chtimes(data, now, now)
		o.touched = now
	}
	if o.complete && len(o.unverified) > 0 {
		if err := o.verifyWholeLocked(); err != nil {
			// Each range was journalled with its own CRC32C: refetch only
			// those that no longer match (a flipped bit, a torn write). If
			// every range matches what was written, the bytes were wrong
			// when they were fetched: refetch the whole object.
			before := o.npresent
			o.verifySpansLocked(0, o.meta.Size)
			if o.npresent == before {
				o.c.log.Error("cache: cached object failed verification; refetching", "object", o.meta.String(), "err", err)
				o.resetLocked()
			} else {
				o.c.log.Error("cache: cached object failed verification; refetching the damaged ranges", "object", o.meta.String(),
					"refetch_bytes", (before-o.npresent)*o.c.opts.BlockSize, "err", err)
			}
		} else {
			o.unverified = nil
		}
	}
	return nil
}

// goMemOnlyLocked serves the object from memory after its files could not
// be opened. What the presence bits said was on disk cannot be read now, so
// it is forgotten (the journal, if any, still names it for a later run).
func (o *Object) goMemOnlyLocked(err error) {
	o.closeFilesLocked()
	o.clearPresence()
	o.memOnly = true
	o.c.diskError(o, nil, err)
}

// loadLocked sizes the object's presence bitset and restores it from the
// journal (see loadJournalLocked).
func (o *Object) loadLocked() error {
	bs := o.c.opts.BlockSize
	o.nblocks = (o.meta.Size + bs - 1) / bs
	o.present = make([]uint64, (o.nblocks+63)/64)
	if o.meta.Size == 0 {
		o.complete = true
		return nil
	}
	if err := o.loadJournalLocked(); err != nil {
		return err
	}
	o.touched = time.Now()
	return nil
}

// openFilesLocked opens the data file and the journal for appending, on
// first use and whenever an idle object is used again. If either file has
// disappeared in between (someone cleared the cache directory under the
// daemon), the ranges recorded in memory are no longer on disk: the object
// starts afresh rather than serve a hole as data.
func (o *Object) openFilesLocked() error {
	dataPath, jnlPath := o.c.paths(o.key)
	restart := false
	data, err := os.OpenFile(dataPath, os.O_RDWR, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		restart = o.npresent > 0
		if err = os.MkdirAll(filepath.Dir(dataPath), 0o755); err == nil {
			data, err = os.OpenFile(dataPath, os.O_RDWR|os.O_CREATE, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("cache: open data %s: %w", dataPath, err)
	}
	if _, err := os.Stat(jnlPath); errors.Is(err, fs.ErrNotExist) {
		restart = true
	}
	if restart {
		o.c.log.Warn("cache: cached files disappeared; refetching", "object", o.meta.String(), "path", dataPath)
		o.clearPresence()
		if err := o.writeHeaderLocked(jnlPath); err != nil {
			data.Close()
			return err
		}
	}
	jnl, err := os.OpenFile(jnlPath, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		data.Close()
		return fmt.Errorf("cache: open journal %s: %w", jnlPath, err)
	}
	if st, err := data.Stat(); err == nil && st.Size() != o.meta.Size {
		// Sparse: allocates nothing, but gives the file the object's
		// length so a complete file can back passthrough as it is.
		if err := data.Truncate(o.meta.Size); err != nil {
			jnl.Close()
			data.Close()
			return fmt.Errorf("cache: size data %s: %w", dataPath, err)
		}
	}
	o.data, o.jnl = data, jnl
	return nil
}

// markPresentLocked marks the blocks wholly inside [start,end) present; the
// object's last block counts when end is the object's end.
func (o *Object) markPresentLocked(start, end int64) {
	bs := o.c.opts.BlockSize
	last := end / bs
	if end == o.meta.Size {
		last = (end + bs - 1) / bs
	}
	for b := (start + bs - 1) / bs; b < last; b++ {
		o.set(b)
	}
}

// verifyWholeLocked checks the object against its CRC32C: from the CRC32Cs
// of the ranges this process fetched when they tile it (the bytes as they
// arrived, which the kernel then wrote), else by reading the data file.
func (o *Object) verifyWholeLocked() error {
	if !o.meta.HasCRC32C {
		o.c.Stats.UnverifiedObjectsServed.Add(1)
		return nil
	}
	got, ok := assembledCRC(o.fetched, o.meta.Size)
	o.fetched = nil
	if !ok {
		o.c.Stats.ReadBackChecks.Add(1)
		h := crc32.New(castagnoli)
		if _, err := io.Copy(h, io.NewSectionReader(o.data, 0, o.meta.Size)); err != nil {
			return fmt.Errorf("cache: read %s for verification: %w", o.meta, err)
		}
		got = h.Sum32()
	}
	if got != o.meta.CRC32C {
		o.c.Stats.ChecksumMismatches.Add(1)
		return fmt.Errorf("%w: %s: cached %08x, object %08x", ErrChecksum, o.meta, got, o.meta.CRC32C)
	}
	return nil
}

// verifySpansLocked checks the unverified ranges overlapping [start,end)
// before any of their bytes are served; a range that fails is dropped.
func (o *Object) verifySpansLocked(start, end int64) {
	keep := o.unverified[:0]
	for _, s := range o.unverified {
		if s.end <= start || s.start >= end {
			keep = append(keep, s)
			continue
		}
		buf := make([]byte, s.end-s.start)
		_, err := o.data.ReadAt(buf, s.start)
		if err == nil && crc32.Checksum(buf, castagnoli) == s.crc {
			continue
		}
		o.c.Stats.ChecksumMismatches.Add(1)
		o.c.log.Warn("cache: cached range failed verification; refetching", "object", o.meta.String(),
			"offset", s.start, "length", s.end-s.start, "read_err", err)
		bs := o.c.opts.BlockSize
		for b := s.start / bs; b < (s.end+bs-1)/bs; b++ {
			if o.has(b) {
				o.present[b>>6] &^= 1 << (b & 63)
				o.npresent--
			}
		}
		o.complete = false
	}
	o.unverified = keep
}

func (o *Object) closeFilesLocked() {
	if o.ro != nil {
		o.ro.Close()
		o.ro = nil
	}
	if o.data != nil {
		o.data.Close()
		o.data = nil
	}
	if o.jnl != nil {
		o.jnl.Close()
		o.jnl = nil
	}
}

// idleLocked reports whether nothing uses the object's files: no handle, no
// fill that will write to them, no verification reading them.
func (o *Object) idleLocked() bool {
	return o.refs == 0 && len(o.inflight) == 0 && !o.completing
}

// closeIfIdleLocked closes the files of an object nobody uses; whoever
// makes the object idle calls it (the last Close, the last fill, the
// verification). It reports whether the object is idle, so the caller can
// let eviction consider it.
func (o *Object) closeIfIdleLocked() bool {
	if !o.idleLocked() {
		return false
	}
	o.closeFilesLocked()
	return true
}

func (o *Object) release() {
	o.mu.Lock()
	o.refs--
	var idle, keep bool
	if o.idleLocked() && o.complete && len(o.unverified) == 0 && o.data != nil && o.c.opts.KeepOpen > 0 {
		// Renderers reopen the same files frame after frame: a complete
		// object keeps its files open among the most recently closed.
		idle, keep = true, true
	} else {
		idle = o.closeIfIdleLocked()
	}
	o.mu.Unlock()
	if keep {
		o.c.keepOpen(o)
	}
	if idle {
		o.c.kickEvictionIfOver()
	}
}

// segment is a piece of a read: from the data file, or from a fill's buffer.
type segment struct {
	start, end int64
	f          *fill // nil: read from the data file
	mem        bool  // f is held in memory (the disk refused it), not fetched for this read
}

// prepare works out where each byte of [off,end) will come from, starting
// fills for missing blocks. fetchMin is how far a new fill may extend past
// the first missing block (up to the next present or in-flight block).
func (o *Object) prepare(h *Handle, off, end, fetchMin int64, segs []segment, cause trace.SpanContext, who Asker) ([]segment, error) {
	bs := o.c.opts.BlockSize
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.data == nil && !o.memOnly {
		// A handle keeps its object's files open and eviction takes only
		// objects nobody has open, so this is reached only after
		// Cache.Close.
		return nil, errors.New("cache: closed")
	}
	if h.servedUnverified && h.servedEpoch != o.epoch {
		return nil, fmt.Errorf("%w: %s: bytes this handle read earlier failed the object's CRC32C once it was assembled; reopen the file", ErrChecksum, o.meta)
	}
	if !o.complete && o.meta.HasCRC32C && o.meta.Size > o.c.opts.WholeObjectMax {
		// These bytes are served before the object's CRC32C can be
		// checked (it covers the whole object): remember who read them.
		if !h.servedUnverified {
			h.servedUnverified, h.servedEpoch = true, o.epoch
		}
		o.noteReaderLocked(h)
	}
	b0, b1 := off/bs, (end+bs-1)/bs
	if len(o.unverified) > 0 {
		o.verifySpansLocked(b0*bs, b1*bs)
	}
	whole := o.meta.Size <= o.c.opts.WholeObjectMax && o.npresent == 0 && len(o.inflight) == 0 && len(o.mem) == 0
	for b := b0; b < b1; {
		if o.has(b) {
			s := b * bs
			for b < b1 && o.has(b) {
				b++
			}
			segs = append(segs, segment{max(s, off), min(b*bs, end), nil, false})
			continue
		}
		f := o.inflight[b]
		fromMem := false
		if f == nil {
			f = o.mem[b]
			if f != nil {
				o.c.memTouch(f)
				fromMem = true
			}
		}
		if f == nil {
			fs, fe := b*bs, min(o.meta.Size, max(end, b*bs+fetchMin))
			if whole {
				fs, fe = 0, o.meta.Size
			}
			// b is missing (neither present, in flight nor in memory), so
			// the run found starts at b.
			_, e, _ := o.nextMissingLocked(b, fe, math.MaxInt64, nil)
			f = o.startFillLocked(fs, min(e*bs, o.meta.Size), false, cause, who)
		}
		segs = append(segs, segment{max(f.start, off), min(f.end, end), f, fromMem})
		b = (f.end + bs - 1) / bs
	}
	return segs, nil
}

// maxReaders bounds the readers named in a late mismatch's log line.
const maxReaders = 8

func (o *Object) noteReaderLocked(h *Handle) {
	if h.readerID == 0 || o.readerIDs[h.readerID] {
		return
	}
	if o.readerIDs == nil {
		o.readerIDs = map[uint32]bool{}
	}
	o.readerIDs[h.readerID] = true
	if len(o.readers) >= maxReaders {
		o.moreReaders++
		return
	}
	o.readers = append(o.readers, h.reader)
}

// readAhead starts fills for missing parts of [start,end) if read-ahead
// slots are free; it never waits. It returns how far read-ahead is in place:
// end, or where it ran out of slots, so the caller can try the rest again
// on a later read instead of leaving it to small foreground fetches.
func (o *Object) readAhead(start, end int64, cause trace.SpanContext, who Asker) int64 {
	ps, bs := o.c.opts.PartSize, o.c.opts.BlockSize
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.data == nil && !o.memOnly {
		return end
	}
	// Fills end on block boundaries (or the object's end): a block is the
	// unit of presence.
	end = min((end+bs-1)/bs*bs, o.meta.Size)
	for p := start / ps * ps; p < end; p += ps {
		pe := min(p+ps, end)
		// Fetch the part's first run of blocks that are neither present
		// nor being fetched, up to the next block that is.
		b, e, ok := o.nextMissingLocked(max(p, start)/bs, pe, math.MaxInt64, nil)
		if !ok {
			continue
		}
		if !o.c.ra.TryAcquire(1) {
			return max(b*bs, start)
		}
		o.startFillLocked(b*bs, min(e*bs, pe), true, cause, who)
	}
	return end
}

// completeVerify checks an object assembled from ranges against its CRC32C.
func (o *Object) completeVerify() {
	defer o.c.wg.Done()
	o.mu.Lock()
	defer o.mu.Unlock()
	defer o.closeIfIdleLocked()
	o.completing = false
	if o.verifyWait != nil {
		defer func(ch chan struct{}) { close(ch) }(o.verifyWait)
		o.verifyWait = nil
	}
	if o.data == nil || o.evicted || o.npresent != o.nblocks {
		return
	}
	if err := o.verifyWholeLocked(); err != nil {
		// The refetch must not come from a copy that may be the corrupt one.
		reportMismatch(o.src, o.meta)
		args := []any{"object", o.meta.String(), "err", err}
		if len(o.readers) > 0 {
			// Bytes of this object were served before the check could be
			// made (GCS gives a CRC32C for the whole object only): say who
			// read them, and fail those handles' next reads.
			o.c.Stats.LateMismatches.Add(1)
			o.epoch++
			args = append(args, "served_before_check_to", o.readers, "more_readers", o.moreReaders)
			o.c.log.Error("cache: assembled object does not match its CRC32C after some of its bytes were served; discarding cached ranges, failing the next read of each handle that read them", args...)
		} else {
			o.c.log.Error("cache: assembled object does not match its CRC32C; discarding cached ranges", args...)
		}
		o.readers, o.readerIDs, o.moreReaders = nil, nil, 0
		o.resetLocked()
		return
	}
	o.readers, o.readerIDs, o.moreReaders = nil, nil, 0
	if o.jnl == nil {
		o.c.diskError(o, nil, errors.New("journal not open"))
	} else if _, err := o.jnl.Write([]byte(completeLine)); err != nil {
		// Verified all the same; only a restart must check it again.
		o.c.diskError(o, nil, err)
	}
	o.complete = true
}

func (c *Cache) kickEvictionIfOver() {
	c.mu.Lock()
	over := c.used > int64(float64(c.opts.Budget)*c.opts.HighWater)
	c.mu.Unlock()
	if over {
		c.kickEviction()
	}
}
