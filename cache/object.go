package cache

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrChecksum reports bytes from the Source that do not match the object's
// CRC32C; they are never served.
var ErrChecksum = errors.New("cache: CRC32C mismatch")

// tracer makes the fill spans. It is the global provider's: a daemon with
// tracing on sets one (telemetry.Setup); otherwise spans cost nothing.
var tracer = otel.Tracer("github.com/jitfs/jitfs/cache")

const journalVersion = 1

type journalHeader struct {
	V int `json:"v"`
	Meta
}

// span is a byte range recorded in the journal by an earlier run and not
// yet checked against its CRC32C in this one.
type span struct {
	start, end int64
	crc        uint32
}

// fill is one fetch of a block-aligned byte range, shared by every reader
// that needs any of its blocks.
type fill struct {
	o          *Object
	start, end int64
	readAhead  bool
	// pfWeight is the prefetch byte budget the fill holds (Handle.Fetch);
	// 0 for reader and read-ahead fills.
	pfWeight int64
	done     chan struct{} // closed when buf or err is set
	// stored is closed once the fill's bytes are on disk and present, or
	// the fill was dropped (error, eviction, disk failure): the point at
	// which residency is settled, which Handle.Fetch waits for.
	stored chan struct{}
	buf    []byte
	err    error
	// cause is the span of the operation that started the fill (a FUSE
	// read, a prefetch), linked from the fill's own span.
	cause trace.SpanContext
	// memElem is the fill's place in the cache's memory LRU once the disk
	// refused its bytes and they are served from memory (guarded by
	// Cache.memMu).
	memElem *list.Element
}

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
	// fill in flight, or a whole-object verification running
	// (INVARIANT: otherwise both are nil). A daemon that has read 100k
	// files must not hold 200k descriptors.
	data, jnl  *os.File
	present    []uint64 // bitset over blocks
	nblocks    int64
	npresent   int64
	unverified []span
	complete   bool // every block present and the whole object verified
	completing bool
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

func (o *Object) loadLocked() error {
	bs := o.c.opts.BlockSize
	o.nblocks = (o.meta.Size + bs - 1) / bs
	o.present = make([]uint64, (o.nblocks+63)/64)
	if o.meta.Size == 0 {
		o.complete = true
		return nil
	}
	_, jnlPath := o.c.paths(o.key)
	if err := os.MkdirAll(filepath.Dir(jnlPath), 0o755); err != nil {
		return fmt.Errorf("cache: %s: %w", o.meta, err)
	}
	fresh := true
	if b, err := os.ReadFile(jnlPath); err == nil {
		fresh = !o.parseJournal(b)
	}
	if fresh {
		if err := o.writeHeaderLocked(jnlPath); err != nil {
			return err
		}
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

// parseJournal restores presence from a journal; false means the journal
// is unusable (absent header, other object, other version) and is rewritten.
func (o *Object) parseJournal(b []byte) bool {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return false
	}
	var h journalHeader
	if json.Unmarshal(b[:nl], &h) != nil || h.V != journalVersion || h.Gen != o.meta.Gen ||
		h.Size != o.meta.Size || h.Name != o.meta.Name || h.Bucket != o.meta.Bucket {
		return false
	}
	sawComplete := false
	sc := bufio.NewScanner(bytes.NewReader(b[nl+1:]))
	rest := b[nl+1:]
	for sc.Scan() {
		line := sc.Bytes()
		// bufio.Scanner yields a final line without its newline too; such a
		// line is a torn append and must not count.
		consumed := len(line) + 1
		if consumed > len(rest) || rest[len(line)] != '\n' {
			break
		}
		rest = rest[consumed:]
		f := bytes.Fields(line)
		switch {
		case len(f) == 1 && string(f[0]) == "C":
			sawComplete = true
		case len(f) == 4 && string(f[0]) == "R":
			s, e1 := strconv.ParseInt(string(f[1]), 10, 64)
			e, e2 := strconv.ParseInt(string(f[2]), 10, 64)
			crc, e3 := strconv.ParseUint(string(f[3]), 16, 32)
			if e1 != nil || e2 != nil || e3 != nil || s < 0 || e > o.meta.Size || s >= e || s%o.c.opts.BlockSize != 0 {
				continue
			}
			// A range written again (refetched after it failed its check)
			// supersedes what an earlier line said of those bytes: the old
			// CRC32C no longer describes them. What the old range held
			// outside the new one is dropped with it and fetched again.
			keep := o.unverified[:0]
			for _, old := range o.unverified {
				if old.end <= s || old.start >= e {
					keep = append(keep, old)
				}
			}
			o.unverified = append(keep, span{s, e, uint32(crc)})
		}
	}
	for _, sp := range o.unverified {
		o.markPresentLocked(sp.start, sp.end)
	}
	o.complete = sawComplete && o.npresent == o.nblocks
	return true
}

func (o *Object) writeHeaderLocked(jnlPath string) error {
	hb, _ := json.Marshal(journalHeader{V: journalVersion, Meta: o.meta})
	tmp := jnlPath + ".tmp"
	if err := os.WriteFile(tmp, append(hb, '\n'), 0o644); err != nil {
		return fmt.Errorf("cache: write journal %s: %w", jnlPath, err)
	}
	if err := os.Rename(tmp, jnlPath); err != nil {
		return fmt.Errorf("cache: write journal %s: %w", jnlPath, err)
	}
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

// resetLocked forgets every cached range of the object (after a checksum
// failure). The data file's bytes stay but are no longer trusted.
func (o *Object) resetLocked() {
	o.resets++
	o.clearPresence()
	if o.jnl == nil {
		return
	}
	_, jnlPath := o.c.paths(o.key)
	o.jnl.Close()
	o.jnl = nil
	if err := o.writeHeaderLocked(jnlPath); err != nil {
		o.c.log.Warn("cache: reset journal", "object", o.meta.String(), "err", err)
		return
	}
	if f, err := os.OpenFile(jnlPath, os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		o.jnl = f
	}
}

// verifyWholeLocked checks the data file against the object's CRC32C.
func (o *Object) verifyWholeLocked() error {
	if !o.meta.HasCRC32C {
		o.c.Stats.UnverifiedObjectsServed.Add(1)
		return nil
	}
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, io.NewSectionReader(o.data, 0, o.meta.Size)); err != nil {
		return fmt.Errorf("cache: read %s for verification: %w", o.meta, err)
	}
	if got := h.Sum32(); got != o.meta.CRC32C {
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
	idle := o.closeIfIdleLocked()
	o.mu.Unlock()
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
func (o *Object) prepare(h *Handle, off, end, fetchMin int64, segs []segment, cause trace.SpanContext) ([]segment, error) {
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
			e := b + 1
			for e*bs < fe && o.missingLocked(e) {
				e++
			}
			f = o.startFillLocked(fs, min(e*bs, o.meta.Size), false, cause)
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
func (o *Object) readAhead(start, end int64, cause trace.SpanContext) int64 {
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
		b, pe := max(p, start)/bs, min(p+ps, end)
		// Skip to the first block of the part that is neither present nor
		// being fetched; fetch up to the next one that is.
		for b*bs < pe && !o.missingLocked(b) {
			b++
		}
		if b*bs >= pe {
			continue
		}
		e := b + 1
		for e*bs < pe && o.missingLocked(e) {
			e++
		}
		if !o.c.ra.TryAcquire(1) {
			return max(b*bs, start)
		}
		o.startFillLocked(b*bs, min(e*bs, pe), true, cause)
	}
	return end
}

// missingLocked reports whether block b must be fetched: not on disk, not
// being fetched, not held in memory.
func (o *Object) missingLocked(b int64) bool {
	return !o.has(b) && o.inflight[b] == nil && o.mem[b] == nil
}

func (o *Object) startFillLocked(start, end int64, readAhead bool, cause trace.SpanContext) *fill {
	f := o.newFillLocked(start, end, readAhead, cause)
	o.launchFillLocked(f)
	return f
}

// newFillLocked registers a fill for [start,end) as in flight.
func (o *Object) newFillLocked(start, end int64, readAhead bool, cause trace.SpanContext) *fill {
	f := &fill{o: o, start: start, end: end, readAhead: readAhead, done: make(chan struct{}), stored: make(chan struct{}), cause: cause}
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
	ctx := c.ctx
	if f.pfWeight > 0 {
		defer c.pf.Release(f.pfWeight)
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
		rec := fmt.Sprintf("R %d %d %08x\n", f.start, f.end, crc)
		if verifiedWhole {
			rec += "C\n"
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
	} else if _, err := o.jnl.Write([]byte("C\n")); err != nil {
		// Verified all the same; only a restart must check it again.
		o.c.diskError(o, nil, err)
	}
	o.complete = true
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

func (c *Cache) kickEvictionIfOver() {
	c.mu.Lock()
	over := c.used > int64(float64(c.opts.Budget)*c.opts.HighWater)
	c.mu.Unlock()
	if over {
		c.kickEviction()
	}
}
