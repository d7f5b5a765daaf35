package metastore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/jitfs/jitfs/namespace"
)

// Options configures a Store.
type Options struct {
	// Path is the bbolt file, created if missing (its directory must exist).
	Path string
	// Logger receives corruption reports and dropped writes; nil discards.
	Logger *slog.Logger
	// QueueLen bounds the listing writes waiting for the writer (default
	// 65536). Past it a write is dropped and counted: the directory is only
	// listed again from GCS after a restart, nothing worse.
	QueueLen int
}

// Job is a job's record on this node.
type Job struct {
	ID string
	// Started is when the job's first task attached on this node: its
	// listings are no older than this.
	Started time.Time
	// Detached is when its last task detached (zero while a task is
	// attached); the daemon ends the job after a grace period from this.
	Detached time.Time
}

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("metastore: closed")

// Bucket names and the format record. formatValue changes with any
// change of layout or record encoding a daemon could not read.
var (
	bucketMeta     = []byte("meta")
	bucketJobs     = []byte("jobs")
	bucketListings = []byte("listings")
	keyFormat      = []byte("format")
	formatValue    = []byte("jitfs-metastore/1")
)

// maxBatch bounds the writes committed by one transaction (one fsync).
const maxBatch = 1024

// Store is the node daemon's persisted metadata. See the package comment.
type Store struct {
	db      *bolt.DB
	path    string
	log     *slog.Logger
	rebuilt bool
	reason  string
	// checkTook is how long the open checks took (benchmarks report it).
	checkTook time.Duration

	ops        chan *op     // pointers: a buffer of 65536 ops by value is 13 MB to zero at Open
	mu         sync.RWMutex // guards closed against sends on ops
	closed     bool
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	pending atomic.Int64
	dropped atomic.Int64
	// failed is set when a write transaction panicked (a page damaged
	// after the open checks): bbolt's writer lock is lost with it, so
	// every later write fails and reads are refused until a restart,
	// whose checks rebuild the store.
	failed atomic.Bool
}

type opKind uint8

const (
	opSave      opKind = iota // a listing
	opPutJob                  // a job record
	opDeleteJob               // a job and its listings
	opDropBad                 // a record that failed its check, if it still fails
	opFlush                   // no write: answered once all before it are committed
	opStop                    // no write: the writer's last op
)

type op struct {
	kind    opKind
	job     string
	key     string // listing key (opSave, opDropBad); "" with opDropBad: the job record
	listing namespace.Listing
	rec     Job
	done    chan error // sync ops: the commit's outcome
}

func (o *op) isWrite() bool { return o.kind < opFlush }

// Open opens the store at opts.Path, creating it if missing. A torn or
// corrupt file is logged, renamed aside to Path+".corrupt" and replaced by
// an empty store (Rebuilt says so). An error is returned when the file is
// locked by another process (after 1 s) or when not even an empty store can
// be created.
func Open(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("metastore: Path is required")
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 65536
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: opts.Path, log: lg, ops: make(chan *op, opts.QueueLen), writerDone: make(chan struct{})}
	start := time.Now()
	db, reason, err := s.openChecked()
	if err != nil {
		return nil, err
	}
	if reason != "" {
		lg.Error("metastore: corrupt metadata store; moved aside, starting empty (directories are listed again from GCS)",
			"path", opts.Path, "reason", reason, "moved_to", opts.Path+".corrupt")
		if err := os.Rename(opts.Path, opts.Path+".corrupt"); err != nil {
			return nil, fmt.Errorf("metastore: moving aside corrupt %s: %w", opts.Path, err)
		}
		db, reason2, err := s.openChecked()
		if err != nil {
			return nil, err
		}
		if reason2 != "" {
			return nil, fmt.Errorf("metastore: fresh store %s fails its checks: %s", opts.Path, reason2)
		}
		s.db, s.rebuilt, s.reason = db, true, reason
	} else {
		s.db = db
	}
	s.checkTook = time.Since(start)
	lg.Debug("metastore: opened", "path", opts.Path, "took", s.checkTook, "rebuilt", s.rebuilt)
	go s.writer()
	return s, nil
}

// openChecked opens the bbolt file and checks it. A non-empty reason
// means the file is corrupt (and is closed); err means it could not be
// opened at all (locked, unreadable), which rebuilding would not help.
//
// Every read of a damaged file may fault: bbolt follows page numbers into
// its memory map unchecked, and a page past the end of a truncated file
// raises SIGBUS. SetPanicOnFault turns that into a panic in this goroutine,
// recovered below like bbolt's own panics on bad pages.
func (s *Store) openChecked() (db *bolt.DB, reason string, err error) {
	var file *os.File
	bopts := &bolt.Options{
		// A second daemon on the same cache fails clearly instead of
		// waiting forever for the lock.
		Timeout:      time.Second,
		FreelistType: bolt.FreelistMapType,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			if err == nil {
				file = f
			}
			return f, err
		},
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// Release the file (and its lock); the mapping of a db that
		// panicked while opening is left to the process's exit.
		if db != nil {
			closeQuietly(db)
		} else if file != nil {
			_ = file.Close()
		}
		db, reason, err = nil, fmt.Sprintf("panic reading the file: %v", r), nil
	}()

	db, err = bolt.Open(s.path, 0o600, bopts)
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, "", fmt.Errorf("metastore: %s is locked by another process (another jitfs daemon on this cache?): %w", s.path, err)
		case file == nil, errors.Is(err, fs.ErrPermission):
			return nil, "", fmt.Errorf("metastore: open %s: %w", s.path, err)
		}
		return nil, "bbolt open: " + err.Error(), nil
	}
	if reason = s.check(db, file); reason != "" {
		closeQuietly(db)
		return nil, reason, nil
	}
	return db, "", nil
}

func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// check verifies the format record, walks every record checking its CRC,
// then runs bbolt's own consistency check; it initialises a fresh file and
// deletes bad records and orphaned listings (a job record lost to damage).
func (s *Store) check(db *bolt.DB, file *os.File) string {
	fresh := false
	var reason string
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				reason = "no format record"
			}
			fresh = empty
			return nil
		}
		if v := meta.Get(keyFormat); !bytes.Equal(v, formatValue) {
			reason = fmt.Sprintf("unknown format version %q (want %q)", v, formatValue)
			return nil
		}
		if tx.Bucket(bucketJobs) == nil || tx.Bucket(bucketListings) == nil {
			reason = "missing jobs or listings bucket"
			return nil
		}
		fi, err := file.Stat()
		if err != nil {
			return err
		}
		ps := uint64(db.Info().PageSize)
		pc := &pageChecker{r: file, size: fi.Size(), pageSize: ps, hwm: uint64(tx.Size()) / ps, seen: map[uint64]bool{}}
		if err := pc.page(uint64(tx.Cursor().Bucket().RootPage()), 0); err != nil {
			reason = "page check: " + err.Error()
		}
		return nil
	})
	if err != nil {
		return "reading the format record: " + err.Error()
	}
	if reason != "" {
		return reason
	}
	if fresh {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketMeta, bucketJobs, bucketListings} {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyFormat, formatValue)
		})
		if err != nil {
			return "initialising: " + err.Error()
		}
		return ""
	}

	// The page check above made tx.Check safe to run (see pageChecker);
	// the walk reads every record and its CRC.
	var bad badRecords
	if err := db.View(func(tx *bolt.Tx) error { bad = walk(tx); return nil }); err != nil {
		return "walking the records: " + err.Error()
	}
	var errs []error
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			if n < 3 {
				errs = append(errs, err)
			}
			n++
		}
		return nil
	}); err != nil {
		return "bbolt check: " + err.Error()
	}
	if n > 0 {
		return fmt.Sprintf("bbolt check: %d errors: %v", n, errors.Join(errs...))
	}
	if bad.empty() {
		return ""
	}
	s.log.Error("metastore: dropping damaged records (their directories are listed again from GCS)", "path", s.path,
		"jobs", len(bad.jobs), "listings", len(bad.listings), "orphaned_jobs", len(bad.orphans))
	if err := db.Update(bad.delete); err != nil {
		return "deleting damaged records: " + err.Error()
	}
	return ""
}

type badKey struct{ job, key []byte }

type badRecords struct {
	jobs     [][]byte
	listings []badKey
	orphans  [][]byte // listings buckets of jobs with no valid record
}

func (b *badRecords) empty() bool { return len(b.jobs)+len(b.listings)+len(b.orphans) == 0 }

// walk reads every record, collecting those failing their CRC.
func walk(tx *bolt.Tx) badRecords {
	var bad badRecords
	jobs, listings := tx.Bucket(bucketJobs), tx.Bucket(bucketListings)
	valid := map[string]bool{}
	c := jobs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if _, err := decodeJob(string(k), v); err != nil || v == nil {
			bad.jobs = append(bad.jobs, bytes.Clone(k))
			continue
		}
		valid[string(k)] = true
	}
	c = listings.Cursor()
	for job, v := c.First(); job != nil; job, v = c.Next() {
		if v != nil || !valid[string(job)] {
			bad.orphans = append(bad.orphans, bytes.Clone(job))
			continue
		}
		lc := listings.Bucket(job).Cursor()
		for k, v := lc.First(); k != nil; k, v = lc.Next() {
			if v == nil {
				bad.listings = append(bad.listings, badKey{bytes.Clone(job), bytes.Clone(k)})
				continue
			}
			if _, err := unseal(domainListing, string(job), string(k), v); err != nil {
				bad.listings = append(bad.listings, badKey{bytes.Clone(job), bytes.Clone(k)})
			}
		}
	}
	return bad
}

func (b *badRecords) delete(tx *bolt.Tx) error {
	jobs, listings := tx.Bucket(bucketJobs), tx.Bucket(bucketListings)
	for _, k := range b.jobs {
		if err := deleteAny(jobs, k); err != nil {
			return err
		}
		b.orphans = append(b.orphans, k)
	}
	for _, bk := range b.listings {
		if jb := listings.Bucket(bk.job); jb != nil {
			if err := deleteAny(jb, bk.key); err != nil {
				return err
			}
		}
	}
	for _, k := range b.orphans {
		if err := deleteAny(listings, k); err != nil {
			return err
		}
	}
	return nil
}

// deleteAny deletes a key whether it holds a value or a bucket.
func deleteAny(b *bolt.Bucket, k []byte) error {
	err := b.Delete(k)
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		err = b.DeleteBucket(k)
	}
	return err
}

// Rebuilt reports whether Open found the file corrupt and started an
// empty store, and why.
func (s *Store) Rebuilt() (bool, string) { return s.rebuilt, s.reason }

// Pending is the number of writes queued and not yet committed.
func (s *Store) Pending() int { return int(s.pending.Load()) }

// Dropped counts listing writes dropped because the queue was full (or
// the Store closed, or their commit failed).
func (s *Store) Dropped() int64 { return s.dropped.Load() }

// enqueue queues o; without block it gives up when the queue is full.
func (s *Store) enqueue(o *op, block bool) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	if o.isWrite() {
		s.pending.Add(1)
	}
	if block {
		s.ops <- o
		return true
	}
	select {
	case s.ops <- o:
		return true
	default:
		if o.isWrite() {
			s.pending.Add(-1)
		}
		return false
	}
}

// sync queues o and waits for its commit.
func (s *Store) sync(o *op) error {
	o.done = make(chan error, 1)
	if !s.enqueue(o, true) {
		return ErrClosed
	}
	return <-o.done
}

// Flush waits until every write queued before the call is committed, and
// returns the error of the last commit it waited for.
func (s *Store) Flush() error { return s.sync(&op{kind: opFlush}) }

// Close commits the writes queued, then closes the file. Writes after it
// are dropped.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.ops <- &op{kind: opStop}
		<-s.writerDone
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// writer commits queued writes, as many as are waiting per transaction:
// one fsync per batch, however many directories a burst of listings
// completed.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*op, 0, maxBatch)
	for {
		batch = append(batch[:0], <-s.ops)
	fill:
		for len(batch) < maxBatch && batch[len(batch)-1].kind != opStop {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.apply(batch)
		if batch[len(batch)-1].kind == opStop {
			return
		}
		clear(batch) // let the listings written go
	}
}

func (s *Store) apply(batch []*op) {
	errs := make([]error, len(batch))
	writes := 0
	for i := range batch {
		if batch[i].isWrite() {
			writes++
		}
	}
	var commitErr error
	if writes > 0 {
		commitErr = s.update(func(tx *bolt.Tx) error {
			for i := range batch {
				errs[i] = s.applyOne(tx, batch[i])
			}
			return nil
		})
		if commitErr != nil {
			s.log.Error("metastore: commit failed; its listings are listed again after a restart", "path", s.path, "writes", writes, "err", commitErr)
		}
	}
	for i := range batch {
		o := batch[i]
		if o.isWrite() {
			s.pending.Add(-1)
			if commitErr != nil && o.kind == opSave {
				s.dropped.Add(1)
			}
		}
		if o.done != nil {
			err := errs[i]
			if commitErr != nil {
				err = commitErr
			}
			o.done <- err
		}
	}
}

// update runs a write transaction, turning a panic or fault on a damaged
// page into an error and failing the store (see Store.failed).
func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	if s.failed.Load() {
		return errors.New("metastore: store failed earlier; restart to rebuild it")
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s.failed.Store(true)
			err = fmt.Errorf("metastore: panic in a write transaction (damaged file?): %v", r)
		}
	}()
	return s.db.Update(fn)
}

func (s *Store) applyOne(tx *bolt.Tx, o *op) error {
	jobs, listings := tx.Bucket(bucketJobs), tx.Bucket(bucketListings)
	switch o.kind {
	case opSave:
		// Only for a job that still has its record: a listing queued
		// before DeleteJob must not bring the job back.
		if jobs.Get([]byte(o.job)) == nil {
			return nil
		}
		if len(o.key) > bolt.MaxKeySize {
			s.log.Warn("metastore: directory key too long to keep", "job", o.job, "len", len(o.key))
			return nil
		}
		jb, err := listings.CreateBucketIfNotExists([]byte(o.job))
		if err != nil {
			return err
		}
		return jb.Put([]byte(o.key), encodeListing(o.job, o.key, o.listing))
	case opPutJob:
		return jobs.Put([]byte(o.rec.ID), encodeJob(o.rec))
	case opDeleteJob:
		if err := jobs.Delete([]byte(o.job)); err != nil {
			return err
		}
		if err := listings.DeleteBucket([]byte(o.job)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		return nil
	case opDropBad:
		// Deleted only if it still fails: a good listing saved since
		// stays.
		if o.key == "" {
			if v := jobs.Get([]byte(o.job)); v != nil {
				if _, err := decodeJob(o.job, v); err != nil {
					_ = jobs.Delete([]byte(o.job))
					_ = listings.DeleteBucket([]byte(o.job))
				}
			}
			return nil
		}
		if jb := listings.Bucket([]byte(o.job)); jb != nil {
			if v := jb.Get([]byte(o.key)); v != nil {
				if _, err := unseal(domainListing, o.job, o.key, v); err != nil {
					return jb.Delete([]byte(o.key))
				}
			}
		}
	}
	return nil
}

func validID(id string) error {
	if id == "" || len(id) > bolt.MaxKeySize {
		return fmt.Errorf("metastore: invalid job ID %q", id)
	}
	return nil
}

// PutJob keeps a job's record, durably before it returns. A job's
// listings are kept only while it has a record.
func (s *Store) PutJob(j Job) error {
	if err := validID(j.ID); err != nil {
		return err
	}
	return s.sync(&op{kind: opPutJob, rec: j})
}

// DeleteJob deletes a job and every listing of it, durably before it
// returns. Listings of it still queued are not written.
func (s *Store) DeleteJob(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	return s.sync(&op{kind: opDeleteJob, job: id})
}

// Jobs returns the jobs kept, by ID. A damaged record is logged, deleted
// with the job's listings, and left out.
func (s *Store) Jobs() ([]Job, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out []Job
	var bad []string
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			j, err := decodeJob(string(k), v)
			if err != nil || v == nil {
				bad = append(bad, string(k))
				continue
			}
			out = append(out, j)
		}
		return nil
	})
	for _, id := range bad {
		s.log.Error("metastore: damaged job record dropped with its listings", "path", s.path, "job", id)
		s.enqueue(&op{kind: opDropBad, job: id}, false)
	}
	return out, err
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// view runs a read transaction, turning a panic or fault on a damaged
// page into an error.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	if s.failed.Load() {
		return errors.New("metastore: store failed earlier; restart to rebuild it")
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("metastore: panic in a read transaction (damaged file?): %v", r)
		}
	}()
	return s.db.View(fn)
}

// Listings is the namespace.Store of one job's snapshot of one source (an
// opaque name of a bucket prefix, such as "bucket/prefix/").
func (s *Store) Listings(job, source string) namespace.Store {
	return &listings{s: s, job: job, source: source}
}

type listings struct {
	s           *Store
	job, source string
}

func (l *listings) key(dir string) string { return l.source + "\x00" + dir }

// LoadDir returns the stored listing of dir. A record that fails its
// check is logged, deleted and reported absent: the namespace lists the
// directory again rather than serve a generation it cannot vouch for.
func (l *listings) LoadDir(dir string) (namespace.Listing, bool) {
	s := l.s
	if s.isClosed() {
		return namespace.Listing{}, false
	}
	key := l.key(dir)
	var out namespace.Listing
	var found bool
	var bad error
	err := s.view(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bucketListings).Bucket([]byte(l.job))
		if jb == nil {
			return nil
		}
		v := jb.Get([]byte(key))
		if v == nil {
			return nil
		}
		out, bad = decodeListing(l.job, key, v)
		found = bad == nil
		return nil
	})
	if err != nil {
		if !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			s.log.Error("metastore: reading a listing failed", "path", s.path, "job", l.job, "source", l.source, "dir", dir, "err", err)
		}
		return namespace.Listing{}, false
	}
	if bad != nil {
		s.log.Error("metastore: damaged listing dropped; listing it again", "path", s.path, "job", l.job, "source", l.source, "dir", dir, "err", bad)
		s.enqueue(&op{kind: opDropBad, job: l.job, key: key}, false)
		return namespace.Listing{}, false
	}
	return out, found
}

// SaveDir queues the listing for the writer: the namespace calls it with a
// directory's mutex held, so it must not wait for the disk. A full queue
// drops it (counted in Dropped). ls is kept until written: the caller must
// not modify it (a namespace builds a new Listing for every save).
func (l *listings) SaveDir(dir string, ls namespace.Listing) {
	s := l.s
	if s.enqueue(&op{kind: opSave, job: l.job, key: l.key(dir), listing: ls}, false) {
		return
	}
	// Logged at 1, 2, 4, 8... drops: a full queue drops in bursts.
	if n := s.dropped.Add(1); bits.OnesCount64(uint64(n)) == 1 {
		s.log.Warn("metastore: write queue full or store closed; listing not kept", "path", s.path, "dropped", n)
	}
}
