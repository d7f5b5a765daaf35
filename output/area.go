package output

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// Area is one output area: a writable namespace over a GCS prefix whose
// files are staged on local disk and uploaded when closed.
type Area struct {
	opts   Options
	log    *slog.Logger
	j      *journal
	info   areaInfo
	ctx    context.Context // ends uploads, listings and downloads at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	space  space

	// mu guards the namespace, every sfile's journal-side fields, the
	// queue and the counters, and serialises journal writes: it is held
	// across their fsyncs so that a change is acknowledged only once it is
	// journalled, in the order changes happened.
	// LOCK ORDER: sfile.mu, then mu; space.mu is a leaf.
	mu      sync.Mutex
	cond    *sync.Cond // workers wait here for work
	changed chan struct{}
	closed  bool
	root    *node
	nextID  uint64
	files   map[uint64]*sfile // staged files, including unlinked ones still open
	tombs   map[uint64]*tomb
	queue   []work
	busy    map[string]bool // names with an upload or delete running
	events  []DurableEvent  // ring of the most recent durable outputs
	last    uint64          // sequence number of the latest durable event
	counts  counters
}

type counters struct {
	durableFiles, durableBytes, retries, failures int64
}

// node is a name in the area: a directory, a file, or both a staged
// version and the object it will replace.
type node struct {
	name   string
	parent *node
	// kids is non-nil exactly for directories.
	kids    map[string]*node
	listed  bool          // the GCS listing of this directory is merged
	listing chan struct{} // non-nil while a listing runs
	file    *sfile        // the staged version
	obj     *gcs.Attrs    // the live object at this name, as last known
	mtime   time.Time
}

func (n *node) isDir() bool   { return n.kids != nil }
func (n *node) present() bool { return n.kids != nil || n.file != nil || n.obj != nil }

func (n *node) rel() string {
	if n.parent == nil {
		return ""
	}
	if p := n.parent.rel(); p != "" {
		return p + "/" + n.name
	}
	return n.name
}

// sfile is a staged file.
type sfile struct {
	id uint64
	// mu serialises writes, truncation and commits of the file's bytes.
	// It is held across local disk I/O, never across GCS calls.
	mu       sync.Mutex
	writeGen uint64 // GUARDED_BY(mu): bumped by every change of the bytes
	size     atomic.Int64
	open     atomic.Bool // mirrors rec.State == open, read on the write path
	// cutShort is set when a write failed for want of space (staging
	// budget or disk); [cutAt,cutEnd) is the first range that failed. It
	// clears when a later write covers that range or a truncate drops it.
	cutShort      atomic.Bool
	cutAt, cutEnd int64    // GUARDED_BY(mu)
	data          *os.File // the staged bytes; nil once dropped

	// GUARDED_BY(Area.mu):
	rec     record
	due     time.Time // not uploaded before then (Options.UploadDelay)
	node    *node     // nil once unlinked or durable
	handles int
	writers int
	up      string // "", queued, uploading, retrying, failed, durable
	lastErr string
	// commitErr: the last close could not be journalled (the staging disk
	// failed). The file is reported failed, not open, so a flush or a
	// shutdown does not wait for a close that already happened; a flush
	// with retryFailed journals it again.
	commitErr string
	cancel    context.CancelFunc
	closedAt  time.Time
}

// tomb is an object generation to delete from GCS.
type tomb struct {
	rec    record
	done   bool
	failed string // the permanent error that stopped it
}

// work is one queued upload (f) or delete (t).
type work struct {
	f *sfile
	t *tomb
}

func (w work) name() string {
	if w.f != nil {
		return w.f.rec.Name
	}
	return w.t.rec.Name
}

// Upload states as status and flush report them.
const (
	StateOpen        = "open"
	StateQueued      = "queued"
	StateUploading   = "uploading"
	StateRetrying    = "retrying"
	StateFailed      = "failed"
	StateInterrupted = "interrupted"
	// StateCutShort: closed after a write to it failed with ENOSPC; kept
	// staged and not uploaded (Options.UploadCutShort) until it is written
	// again, truncated or removed.
	StateCutShort = "cut_short"
	StateDeleting = "deleting"
	stateDurable  = "durable"
)

// New opens (or creates) the staging directory, recovers what a previous
// daemon left there and starts the uploaders.
func New(opts Options) (*Area, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	j, info, err := openJournal(opts.StagingDir, opts.Bucket, opts.Prefix)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Area{
		opts: opts, log: opts.Logger, j: j, info: info, ctx: ctx, cancel: cancel,
		changed: make(chan struct{}),
		root:    &node{kids: map[string]*node{}, mtime: time.Now()},
		files:   map[uint64]*sfile{}, tombs: map[uint64]*tomb{}, busy: map[string]bool{},
	}
	a.cond = sync.NewCond(&a.mu)
	a.space.budget = opts.StagingBytes
	a.space.freed = make(chan struct{})
	a.space.wanted = make(chan struct{})
	if err := a.recover(); err != nil {
		a.closeFiles()
		j.close()
		cancel()
		return nil, err
	}
	for i := 0; i < opts.Workers; i++ {
		a.wg.Add(1)
		go a.worker()
	}
	return a, nil
}

// StagingID identifies the staging directory; uploads carry it in their
// metadata so a restarted daemon recognises its own finished uploads.
func (a *Area) StagingID() string { return a.info.Staging }

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Close stops the uploaders. Staged data and the journal stay for the next
// daemon; open files become interrupted when it starts.
func (a *Area) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.cond.Broadcast()
	a.notifyLocked()
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	a.mu.Lock()
	a.closeFiles()
	a.mu.Unlock()
	a.j.close()
	return nil
}

func (a *Area) closeFiles() {
	for _, f := range a.files {
		if f.data != nil {
			f.data.Close()
		}
	}
}

// notifyLocked wakes everyone waiting for a state change (flush).
func (a *Area) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// objectName is the GCS name of rel.
func (a *Area) objectName(rel string) string { return a.opts.Prefix + rel }

// checkRel refuses paths GCS cannot name.
func checkRel(rel string) error {
	if rel == "" {
		return nil
	}
	if len(rel) > 900 {
		return ErrNameLen
	}
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "\x00\r\n") {
			return fmt.Errorf("%w: %q", ErrInvalid, rel)
		}
	}
	return nil
}
