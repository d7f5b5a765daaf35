package output

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"sort"
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

// recover rebuilds the state from the journal. Closed files whose bytes
// still match their record are queued for upload; files that were open
// become interrupted; data no record names is deleted.
func (a *Area) recover() error {
	recs, bad, err := a.j.load()
	if err != nil {
		return err
	}
	for _, p := range bad {
		a.log.Error("output: unreadable journal record left in place; its data is kept", "record", p)
	}
	dataIDs, err := a.j.dataIDs()
	if err != nil {
		return err
	}
	// Of two records naming one file, the newer wins: a rename over an
	// existing file journals the source's new name before dropping the
	// target, and a crash in between leaves both.
	sort.Slice(recs, func(i, k int) bool { return recs[i].Seq > recs[k].Seq })
	winner := map[string]bool{}
	keep := map[uint64]bool{}
	var resumed, interrupted, deletes int
	for _, r := range recs {
		a.nextID = max(a.nextID, r.ID)
		if r.Kind == kindDelete {
			t := &tomb{rec: *r}
			a.tombs[r.ID] = t
			a.queue = append(a.queue, work{t: t})
			deletes++
			continue
		}
		if winner[r.Name] {
			a.log.Info("output: dropping a file replaced by a rename before the daemon stopped", "path", r.Name, "id", r.ID)
			os.Remove(a.j.dataPath(r.ID))
			a.j.drop(r.ID)
			continue
		}
		winner[r.Name] = true
		keep[r.ID] = true
		f, err := a.recoverFile(r, dataIDs[r.ID])
		if err != nil {
			return err
		}
		switch f.rec.State {
		case stateClosed:
			resumed++
		case stateInterrupted, stateCutShort:
			interrupted++
		}
	}
	for id := range dataIDs {
		a.nextID = max(a.nextID, id)
		if !keep[id] {
			// Its record was dropped (durable, unlinked) and the crash came
			// before the data went.
			os.Remove(a.j.dataPath(id))
		}
	}
	a.nextID++
	if resumed+interrupted+deletes > 0 {
		a.log.Info("output: recovered staging directory", "dir", a.opts.StagingDir, "uploads_resumed", resumed,
			"interrupted", interrupted, "deletes_resumed", deletes, "staged_bytes", a.space.used)
	}
	return nil
}

func (a *Area) recoverFile(r *record, hasData bool) (*sfile, error) {
	f := &sfile{id: r.ID, rec: *r}
	var err error
	f.data, err = os.OpenFile(a.j.dataPath(r.ID), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("output: open staged data of %s: %w", r.Name, err)
	}
	st, err := f.data.Stat()
	if err != nil {
		return nil, fmt.Errorf("output: staged data of %s: %w", r.Name, err)
	}
	f.size.Store(st.Size())
	a.space.used += st.Size()
	reason := ""
	switch r.State {
	case stateOpen:
		reason = "it was still open for writing when the daemon stopped"
	case stateClosed:
		switch {
		case !hasData && r.Size > 0:
			reason = "its staged data is missing"
		case st.Size() != r.Size:
			reason = fmt.Sprintf("its staged data is %d bytes, the journal says %d", st.Size(), r.Size)
		default:
			crc, err := crcOf(f.data, r.Size)
			if err != nil {
				return nil, fmt.Errorf("output: read staged data of %s: %w", r.Name, err)
			}
			if crc != r.CRC32C {
				reason = fmt.Sprintf("its staged data has CRC32C %08x, the journal says %08x", crc, r.CRC32C)
			}
		}
	}
	if reason != "" {
		f.rec.State = stateInterrupted
		if err := a.j.put(&f.rec); err != nil {
			return nil, err
		}
		a.log.Warn("output: interrupted file kept staged and not uploaded; overwrite or delete it through the mount",
			"path", r.Name, "reason", reason, "bytes", st.Size())
	}
	f.open.Store(false)
	n := a.mkdirAllLocked(path.Dir(r.Name))
	base := path.Base(r.Name)
	child := n.kids[base]
	if child == nil || child.isDir() {
		child = &node{name: base, parent: n, mtime: time.Unix(0, r.MtimeNS)}
		n.kids[base] = child
	}
	child.file, f.node = f, child
	a.files[f.id] = f
	if f.rec.State == stateClosed {
		f.closedAt = time.Unix(0, f.rec.ClosedNS)
		f.up = StateQueued
		a.queue = append(a.queue, work{f: f})
	}
	return f, nil
}

// mkdirAllLocked returns the directory node for rel, creating missing
// ones (not yet listed, so GCS entries still merge in).
func (a *Area) mkdirAllLocked(rel string) *node {
	n := a.root
	if rel == "." || rel == "" {
		return n
	}
	for _, c := range strings.Split(rel, "/") {
		k := n.kids[c]
		if k == nil || !k.isDir() {
			nk := &node{name: c, parent: n, kids: map[string]*node{}, mtime: time.Now()}
			if k != nil {
				// A file and a directory of one name: GCS allows it, a
				// file system does not; the directory wins.
				nk.file, nk.obj = k.file, k.obj
			}
			n.kids[c] = nk
			k = nk
		}
		n = k
	}
	return n
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

// listDir merges the GCS listing of directory n once. Listings run
// without the lock; concurrent callers wait for the one running.
func (a *Area) listDir(ctx context.Context, n *node) error {
	a.mu.Lock()
	for !n.listed {
		if a.closed {
			a.mu.Unlock()
			return ErrClosed
		}
		if ch := n.listing; ch != nil {
			a.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			a.mu.Lock()
			continue
		}
		ch := make(chan struct{})
		n.listing = ch
		prefix := a.objectName(n.rel())
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		a.mu.Unlock()
		var pages []gcs.Page
		var err error
		for token := ""; ; {
			var p gcs.Page
			// Detached from the caller: a listing a cancelled lookup started
			// still serves the next one.
			p, err = a.opts.Remote.ListPage(a.ctx, prefix, token, 0)
			if err != nil {
				break
			}
			pages = append(pages, p)
			if token = p.Next; token == "" {
				break
			}
		}
		a.mu.Lock()
		n.listing = nil
		close(ch)
		if err != nil {
			a.mu.Unlock()
			return fmt.Errorf("output: list gs://%s/%s: %w", a.opts.Bucket, prefix, err)
		}
		a.mergeLocked(n, prefix, pages)
		n.listed = true
	}
	a.mu.Unlock()
	return nil
}

// mergeLocked adds what GCS holds under n to it. What the area knows
// locally (staged files, its own uploads, pending deletes) wins.
func (a *Area) mergeLocked(n *node, prefix string, pages []gcs.Page) {
	if !n.isDir() {
		return
	}
	for _, p := range pages {
		for _, pre := range p.Prefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(pre, prefix), "/")
			if checkRel(name) != nil || strings.Contains(name, "/") || name == "" {
				continue
			}
			k := n.kids[name]
			if k == nil {
				n.kids[name] = &node{name: name, parent: n, kids: map[string]*node{}, mtime: time.Now()}
			} else if !k.isDir() && k.file == nil {
				k.kids = map[string]*node{}
			}
		}
		for i := range p.Objects {
			o := p.Objects[i]
			name := strings.TrimPrefix(o.Name, prefix)
			if name == "" || checkRel(name) != nil || strings.Contains(name, "/") {
				continue
			}
			if a.tombedLocked(o.Name, o.Generation) {
				continue
			}
			k := n.kids[name]
			if k == nil {
				n.kids[name] = &node{name: name, parent: n, obj: &o, mtime: o.Updated}
			} else if k.obj == nil && k.file == nil && !k.isDir() {
				k.obj = &o
			}
		}
	}
}

func (a *Area) tombedLocked(object string, gen int64) bool {
	for _, t := range a.tombs {
		if !t.done && a.objectName(t.rec.Name) == object && t.rec.Gen == gen {
			return true
		}
	}
	return false
}

// lookup returns the node at rel, listing directories on the way.
func (a *Area) lookup(ctx context.Context, rel string) (*node, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	n := a.root
	if rel == "" {
		return n, nil
	}
	for _, c := range strings.Split(rel, "/") {
		if err := a.listDir(ctx, n); err != nil {
			return nil, err
		}
		a.mu.Lock()
		if !n.isDir() {
			a.mu.Unlock()
			return nil, ErrNotDir
		}
		k := n.kids[c]
		if k == nil || !k.present() {
			a.mu.Unlock()
			return nil, ErrNotExist
		}
		a.mu.Unlock()
		n = k
	}
	return n, nil
}

// parentOf returns the listed directory that holds rel, and rel's base.
func (a *Area) parentOf(ctx context.Context, rel string) (*node, string, error) {
	if err := checkRel(rel); err != nil || rel == "" {
		return nil, "", fmt.Errorf("%w: %q", ErrInvalid, rel)
	}
	dir, base := path.Split(rel)
	p, err := a.lookup(ctx, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, "", err
	}
	if !p.isDir() {
		return nil, "", ErrNotDir
	}
	if err := a.listDir(ctx, p); err != nil {
		return nil, "", err
	}
	return p, base, nil
}

// Info describes a file or directory.
type Info struct {
	IsDir bool
	Size  int64
	Mode  uint32 // permission bits
	Mtime time.Time
	// State is "" for a durable or pre-existing object and a directory,
	// else the staged file's state (open, queued, uploading, retrying,
	// failed, interrupted).
	State string
}

func (a *Area) infoLocked(n *node) Info {
	switch {
	case n.isDir():
		return Info{IsDir: true, Mode: 0o755, Mtime: n.mtime}
	case n.file != nil:
		return a.fileInfoLocked(n.file, n.mtime)
	case n.obj != nil:
		return Info{Size: n.obj.Size, Mode: 0o644, Mtime: n.obj.Updated}
	}
	return Info{}
}

func (a *Area) fileInfoLocked(f *sfile, mtime time.Time) Info {
	mode := f.rec.Mode & 0o777
	if mode == 0 {
		mode = 0o644
	}
	return Info{Size: f.size.Load(), Mode: mode, Mtime: mtime, State: f.stateLocked()}
}

func (f *sfile) stateLocked() string {
	switch {
	case f.rec.State == stateOpen && f.commitErr != "":
		return StateFailed
	case f.rec.State == stateOpen:
		return StateOpen
	case f.rec.State == stateInterrupted:
		return StateInterrupted
	case f.rec.State == stateCutShort:
		return StateCutShort
	case f.up == stateDurable:
		return ""
	case f.up == "":
		return StateQueued
	}
	return f.up
}

// Stat describes rel.
func (a *Area) Stat(ctx context.Context, rel string) (Info, error) {
	n, err := a.lookup(ctx, rel)
	if err != nil {
		return Info{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !n.present() && n != a.root {
		return Info{}, ErrNotExist
	}
	return a.infoLocked(n), nil
}

// DirEntry is one name of a directory listing.
type DirEntry struct {
	Name string
	Info
}

// ReadDir lists a directory: what GCS holds under it merged with what was
// written here.
func (a *Area) ReadDir(ctx context.Context, rel string) ([]DirEntry, error) {
	n, err := a.lookup(ctx, rel)
	if err != nil {
		return nil, err
	}
	if err := a.listDir(ctx, n); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !n.isDir() {
		return nil, ErrNotDir
	}
	out := make([]DirEntry, 0, len(n.kids))
	for name, k := range n.kids {
		if k.present() {
			out = append(out, DirEntry{Name: name, Info: a.infoLocked(k)})
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// Mkdir creates a directory. GCS has no directories: an empty one lives
// in the daemon's memory only, and a directory exists in GCS while it
// holds an object.
func (a *Area) Mkdir(ctx context.Context, rel string) error {
	p, base, err := a.parentOf(ctx, rel)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if k := p.kids[base]; k != nil && k.present() {
		return ErrExist
	}
	p.kids[base] = &node{name: base, parent: p, kids: map[string]*node{}, listed: false, mtime: time.Now()}
	return nil
}

// Rmdir removes an empty directory.
func (a *Area) Rmdir(ctx context.Context, rel string) error {
	n, err := a.lookup(ctx, rel)
	if err != nil {
		return err
	}
	if n == a.root {
		return ErrInvalid
	}
	if !n.isDir() {
		return ErrNotDir
	}
	if err := a.listDir(ctx, n); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range n.kids {
		if k.present() {
			return ErrNotEmpty
		}
	}
	n.kids = nil
	a.pruneLocked(n)
	return nil
}

// pruneLocked removes n from its parent once nothing is left of it.
func (a *Area) pruneLocked(n *node) {
	if n.parent != nil && !n.present() && n.parent.kids[n.name] == n {
		delete(n.parent.kids, n.name)
	}
}

// Unlink removes a file: its staged version is dropped and its object is
// deleted from GCS (journalled first, so a restart finishes the delete).
func (a *Area) Unlink(ctx context.Context, rel string) error {
	p, base, err := a.parentOf(ctx, rel)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := p.kids[base]
	switch {
	case n == nil || !n.present():
		return ErrNotExist
	case n.isDir():
		return ErrIsDir
	}
	if n.obj != nil {
		if err := a.addTombLocked(rel, n.obj.Generation); err != nil {
			return err
		}
		n.obj = nil
	}
	if n.file != nil {
		if err := a.unlinkStagedLocked(n.file); err != nil {
			return err
		}
	}
	a.pruneLocked(n)
	return nil
}

// unlinkStagedLocked forgets a staged file: its record goes first, its
// data when the last handle closes.
func (a *Area) unlinkStagedLocked(f *sfile) error {
	if err := a.j.drop(f.id); err != nil {
		return err
	}
	if f.cancel != nil {
		f.cancel()
	}
	if f.node != nil && f.node.file == f {
		f.node.file = nil
	}
	f.node = nil
	f.open.Store(false)
	a.dropDataIfUnusedLocked(f)
	a.notifyLocked()
	return nil
}

// dropDataIfUnusedLocked deletes the bytes of a file the namespace no
// longer holds (durable or unlinked) once no handle reads them.
func (a *Area) dropDataIfUnusedLocked(f *sfile) {
	if f.node != nil || f.handles > 0 || f.data == nil {
		return
	}
	f.data.Close()
	f.data = nil
	os.Remove(a.j.dataPath(f.id))
	a.space.release(f.size.Load())
	delete(a.files, f.id)
}

func (a *Area) addTombLocked(rel string, gen int64) error {
	id := a.nextID
	a.nextID++
	t := &tomb{rec: record{ID: id, Kind: kindDelete, Name: rel, Gen: gen}}
	if err := a.j.put(&t.rec); err != nil {
		return err
	}
	a.tombs[id] = t
	a.enqueueLocked(work{t: t})
	return nil
}

func (a *Area) enqueueLocked(w work) {
	if w.f != nil {
		if w.f.up == StateQueued || w.f.up == StateUploading || w.f.up == StateRetrying {
			return // the worker picks up its current state
		}
		w.f.up = StateQueued
		// Renderers rename a closed temporary file at once: waiting a
		// moment uploads it under its final name only.
		if d := a.opts.UploadDelay; d > 0 {
			w.f.due = time.Now().Add(d)
			time.AfterFunc(d, func() {
				a.mu.Lock()
				a.cond.Broadcast()
				a.mu.Unlock()
			})
		}
	}
	a.queue = append(a.queue, w)
	a.cond.Broadcast()
	a.notifyLocked()
}

// Rename moves a file or directory. A file's staged bytes are renamed in
// the journal; an uploaded object is staged again under its new name and
// the old one deleted. Renaming over an existing file replaces it.
func (a *Area) Rename(ctx context.Context, from, to string, noReplace bool) error {
	sp, sbase, err := a.parentOf(ctx, from)
	if err != nil {
		return err
	}
	dp, dbase, err := a.parentOf(ctx, to)
	if err != nil {
		return err
	}
	// A destination directory must be known to be empty, and a directory
	// being moved must be known to hold no uploaded objects: list them.
	if n, err := a.lookup(ctx, to); err == nil && n.isDir() {
		if err := a.listDir(ctx, n); err != nil {
			return err
		}
	}
	src, err := a.lookup(ctx, from)
	if err != nil {
		return err
	}
	if src.isDir() {
		if err := a.listTree(ctx, src); err != nil {
			return err
		}
	} else {
		a.mu.Lock()
		remoteOnly := src.file == nil && src.obj != nil
		var obj gcs.Attrs
		if remoteOnly {
			obj = *src.obj
		}
		a.mu.Unlock()
		if remoteOnly {
			return a.renameRemote(ctx, sp, sbase, dp, dbase, to, obj, noReplace)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := sp.kids[sbase]
	if s == nil || !s.present() {
		return ErrNotExist
	}
	d := dp.kids[dbase]
	if d == s {
		return nil
	}
	if d != nil && d.present() {
		if noReplace {
			return ErrExist
		}
		if s.isDir() != d.isDir() {
			if d.isDir() {
				return ErrIsDir
			}
			return ErrNotDir
		}
		if d.isDir() {
			for _, k := range d.kids {
				if k.present() {
					return ErrNotEmpty
				}
			}
		}
	}
	if s.isDir() {
		for p := dp; p != nil; p = p.parent {
			if p == s {
				return ErrInvalid // into its own subtree
			}
		}
		if treeHasObjects(s) {
			return ErrCrossDir
		}
		delete(sp.kids, sbase)
		s.name, s.parent = dbase, dp
		dp.kids[dbase] = s
		return a.rejournalTreeLocked(s)
	}
	if s.file == nil {
		return ErrNotExist // it became remote-only meanwhile; the caller may retry
	}
	f := s.file
	rec := f.rec
	rec.Name = to
	if err := a.j.put(&rec); err != nil {
		return err
	}
	f.rec = rec
	if f.cancel != nil {
		f.cancel()
	}
	if d != nil && d.file != nil {
		if err := a.unlinkStagedLocked(d.file); err != nil {
			a.log.Error("output: rename: dropping the replaced file", "path", to, "err", err)
		}
	}
	if s.obj != nil {
		// The old name's object goes; the bytes live on under the new one.
		if err := a.addTombLocked(from, s.obj.Generation); err != nil {
			a.log.Error("output: rename: journal the delete of the old object", "path", from, "err", err)
		}
		s.obj = nil
	}
	s.file = nil
	a.pruneLocked(s)
	if d == nil || d.isDir() {
		d = &node{name: dbase, parent: dp}
		dp.kids[dbase] = d
	}
	d.file, f.node, d.mtime = f, d, s.mtime
	if f.rec.State == stateClosed {
		a.enqueueLocked(work{f: f})
	}
	a.notifyLocked()
	return nil
}

func treeHasObjects(n *node) bool {
	if n.obj != nil {
		return true
	}
	for _, k := range n.kids {
		if treeHasObjects(k) {
			return true
		}
	}
	return false
}

func (a *Area) rejournalTreeLocked(n *node) error {
	if n.file != nil {
		f := n.file
		rec := f.rec
		rec.Name = n.rel()
		if err := a.j.put(&rec); err != nil {
			return err
		}
		f.rec = rec
		if f.cancel != nil {
			f.cancel()
		}
		if f.rec.State == stateClosed {
			a.enqueueLocked(work{f: f})
		}
	}
	for _, k := range n.kids {
		if err := a.rejournalTreeLocked(k); err != nil {
			return err
		}
	}
	return nil
}

// listTree lists every directory under n.
func (a *Area) listTree(ctx context.Context, n *node) error {
	if err := a.listDir(ctx, n); err != nil {
		return err
	}
	a.mu.Lock()
	var dirs []*node
	for _, k := range n.kids {
		if k.isDir() {
			dirs = append(dirs, k)
		}
	}
	a.mu.Unlock()
	for _, d := range dirs {
		if err := a.listTree(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// renameRemote renames a file that exists only in GCS: its bytes are
// downloaded into staging under the new name (and uploaded from there),
// and the old object is deleted.
func (a *Area) renameRemote(ctx context.Context, sp *node, sbase string, dp *node, dbase, to string, obj gcs.Attrs, noReplace bool) error {
	f, err := a.download(ctx, obj, to)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := sp.kids[sbase]
	if s == nil || s.file != nil || s.obj == nil || s.obj.Generation != obj.Generation {
		a.discardLocked(f)
		return ErrRemoteGen
	}
	d := dp.kids[dbase]
	if d != nil && d.present() {
		if noReplace {
			a.discardLocked(f)
			return ErrExist
		}
		if d.isDir() {
			a.discardLocked(f)
			return ErrIsDir
		}
	}
	f.rec.State = stateClosed
	if err := a.j.put(&f.rec); err != nil {
		a.discardLocked(f)
		return err
	}
	if d != nil && d.file != nil {
		a.unlinkStagedLocked(d.file)
	}
	if err := a.addTombLocked(s.rel(), obj.Generation); err != nil {
		a.log.Error("output: rename: journal the delete of the old object", "path", s.rel(), "err", err)
	}
	s.obj = nil
	a.pruneLocked(s)
	if d == nil || d.isDir() {
		d = &node{name: dbase, parent: dp, mtime: obj.Updated}
		dp.kids[dbase] = d
	}
	d.file, f.node = f, d
	a.files[f.id] = f
	f.closedAt = time.Now()
	a.enqueueLocked(work{f: f})
	return nil
}

// discardLocked drops a staged file that never entered the namespace.
func (a *Area) discardLocked(f *sfile) {
	a.j.drop(f.id)
	f.node = nil
	a.files[f.id] = f
	a.dropDataIfUnusedLocked(f)
}

// download stages the bytes of an object (to rename it, or to modify it
// in place), checked against its CRC32C. The record it returns is not yet
// journalled.
func (a *Area) download(ctx context.Context, obj gcs.Attrs, rel string) (*sfile, error) {
	a.mu.Lock()
	id := a.nextID
	a.nextID++
	a.mu.Unlock()
	f := &sfile{id: id, rec: record{ID: id, Kind: kindFile, Name: rel, State: stateOpen, MtimeNS: obj.Updated.UnixNano()}}
	data, err := os.OpenFile(a.j.dataPath(id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("output: stage %s: %w", rel, err)
	}
	f.data = data
	fail := func(err error) (*sfile, error) {
		data.Close()
		os.Remove(a.j.dataPath(id))
		a.space.release(f.size.Load())
		return nil, err
	}
	if err := a.space.reserve(ctx, obj.Size, a.opts.SpaceWait); err != nil {
		return fail(a.noSpace(rel, err))
	}
	f.size.Store(obj.Size)
	buf := make([]byte, 8<<20)
	for off := int64(0); off < obj.Size; off += int64(len(buf)) {
		p := buf[:min(int64(len(buf)), obj.Size-off)]
		if err := a.opts.Remote.ReadRange(ctx, obj.Name, obj.Generation, off, p); err != nil {
			return fail(fmt.Errorf("output: download %s: %w", obj.Name, err))
		}
		if _, err := data.WriteAt(p, off); err != nil {
			return fail(fmt.Errorf("output: stage %s: %w", rel, err))
		}
	}
	crc, err := crcOf(data, obj.Size)
	if err != nil {
		return fail(err)
	}
	if obj.HasCRC32C && crc != obj.CRC32C {
		return fail(fmt.Errorf("output: download %s#%d: CRC32C %08x, GCS says %08x", obj.Name, obj.Generation, crc, obj.CRC32C))
	}
	if err := data.Sync(); err != nil {
		return fail(err)
	}
	f.rec.Size, f.rec.CRC32C = obj.Size, crc
	return f, nil
}

func (a *Area) noSpace(rel string, err error) error {
	// One line per episode: a writer retrying a short write, or several
	// writers, would otherwise repeat it until uploads free space.
	if errors.Is(err, ErrNoSpace) && !a.space.fullLogged.Swap(true) {
		a.log.Error("output: staging full: a write failed with ENOSPC after waiting for uploads to free space",
			"path", rel, "staging_dir", a.opts.StagingDir, "staged_bytes", a.space.usedNow(), "budget_bytes", a.opts.StagingBytes,
			"waited", a.opts.SpaceWait)
	}
	return err
}

// space is the staging budget.
type space struct {
	mu     sync.Mutex
	used   int64
	budget int64
	freed  chan struct{} // closed and replaced when bytes are released
	// wanted is closed and replaced when a writer starts waiting for
	// space: uploaders sleeping out a backoff retry at once, so space
	// comes back as soon as GCS does rather than after a grown backoff.
	wanted chan struct{}
	// fullLogged is set when a full staging area was logged, and cleared
	// when space is released.
	fullLogged atomic.Bool
}

func (s *space) usedNow() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// reserve takes n bytes of the budget, waiting up to wait for uploads to
// release some.
func (s *space) reserve(ctx context.Context, n int64, wait time.Duration) error {
	if n <= 0 {
		return nil
	}
	var timer <-chan time.Time
	for {
		s.mu.Lock()
		if s.used+n <= s.budget {
			s.used += n
			s.mu.Unlock()
			return nil
		}
		ch := s.freed
		if timer == nil {
			close(s.wanted)
			s.wanted = make(chan struct{})
		}
		s.mu.Unlock()
		if timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			return ErrNoSpace
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitFreed waits until uploads release space or deadline passes, for a
// writer the disk itself refused; it wakes uploaders sleeping out a
// backoff, as reserve does.
func (s *space) waitFreed(ctx context.Context, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	s.mu.Lock()
	ch := s.freed
	close(s.wanted)
	s.wanted = make(chan struct{})
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// wantedCh is closed when a writer next starts waiting for space.
func (s *space) wantedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wanted
}

func (s *space) release(n int64) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.used = max(s.used-n, 0)
	s.fullLogged.Store(false)
	close(s.freed)
	s.freed = make(chan struct{})
	s.mu.Unlock()
}
