package output

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"path"
	"sort"
	"strconv"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/backoff"
)

// Metadata keys stored on every uploaded object. A restarted daemon that
// finds its own staging id and the record's sequence number on the live
// object knows the upload finished before it died, and does not repeat it.
const (
	MetaStaging = "jitfs-staging"
	MetaSeq     = "jitfs-seq"
	// MetaCutShort ("true") marks an object uploaded from a file a write
	// to which had failed with ENOSPC (Options.UploadCutShort).
	MetaCutShort = "jitfs-cut-short"
)

// DurableEvent says one output reached GCS, verified.
type DurableEvent struct {
	// Seq increases with every event, across restarts (with gaps), so a
	// poller asks for what came after the last Seq it saw.
	Seq        uint64
	Path       string // relative to the area's root
	Object     string
	Generation int64
	Size       int64
	CRC32C     uint32
	ClosedAt   time.Time
	DurableAt  time.Time
}

func (a *Area) worker() {
	defer a.wg.Done()
	for {
		a.mu.Lock()
		var w work
		for {
			if a.closed {
				a.mu.Unlock()
				return
			}
			i := a.nextWorkLocked()
			if i >= 0 {
				w = a.queue[i]
				a.queue = append(a.queue[:i], a.queue[i+1:]...)
				break
			}
			a.cond.Wait()
		}
		name := w.name()
		a.busy[name] = true
		a.mu.Unlock()
		if w.f != nil {
			a.uploadFile(w.f, name)
		} else {
			a.deleteObject(w.t)
		}
		a.mu.Lock()
		delete(a.busy, name)
		a.cond.Broadcast()
		a.notifyLocked()
		a.mu.Unlock()
	}
}

// nextWorkLocked picks the oldest queued work whose name nothing else is
// working on: uploads and deletes of one name run in the order queued, so
// an older version never lands after a newer one.
func (a *Area) nextWorkLocked() int {
	now := time.Now()
	for i, w := range a.queue {
		if !a.busy[w.name()] && (w.f == nil || !now.Before(w.f.due)) {
			return i
		}
	}
	return -1
}

// uploadFile uploads f under name until it is durable, fails permanently,
// or stops being the closed file at name.
func (a *Area) uploadFile(f *sfile, name string) {
	bo := backoff.New(a.opts.InitialBackoff, a.opts.MaxBackoff)
	for attempt := 1; ; attempt++ {
		a.mu.Lock()
		if a.closed || f.node == nil || f.rec.State != stateClosed {
			if f.up != StateFailed {
				f.up = ""
			}
			a.mu.Unlock()
			return
		}
		if f.rec.Name != name {
			// Renamed while queued: upload under the new name, in order.
			f.up = ""
			a.enqueueLocked(work{f: f})
			a.mu.Unlock()
			return
		}
		rec := f.rec
		ctx, cancel := context.WithCancel(a.ctx)
		f.cancel = cancel
		if attempt == 1 {
			f.up = StateUploading
		}
		a.mu.Unlock()

		attrs, err := a.put(ctx, f, rec)
		cancel()

		a.mu.Lock()
		f.cancel = nil
		if err == nil {
			a.finishLocked(f, rec, attrs)
			a.mu.Unlock()
			return
		}
		if a.closed || f.node == nil || f.rec.Seq != rec.Seq {
			moved := !a.closed && (f.node == nil || f.rec.Name != rec.Name)
			a.mu.Unlock()
			if moved {
				// Cancelled because the file was renamed or removed; the
				// upload may have committed all the same.
				a.reapAbandoned(rec)
			}
			continue // the top of the loop sorts out what changed
		}
		if gcs.IsPermanent(err) && !errors.Is(err, gcs.ErrPrecondition) {
			f.up, f.lastErr = StateFailed, err.Error()
			a.counts.failures++
			a.notifyLocked()
			a.mu.Unlock()
			a.log.Error("output: upload failed permanently; the file stays staged (retry with jitfs flush, or restart)",
				"path", name, "object", a.objectName(name), "bytes", rec.Size, "err", err)
			return
		}
		f.up, f.lastErr = StateRetrying, err.Error()
		a.counts.retries++
		a.notifyLocked()
		a.mu.Unlock()
		d := bo.Next()
		if errors.Is(err, gcs.ErrPrecondition) {
			d = 0 // someone wrote the object since the stat: stat again now
		}
		a.log.Warn("output: upload failed; retrying", "path", name, "attempt", attempt, "in", d.Round(time.Millisecond), "err", err)
		wanted := a.space.wantedCh()
		t := time.NewTimer(d)
		select {
		case <-a.ctx.Done():
		case <-t.C:
		case <-wanted:
			// A writer waits for staging space: retry now, and from the
			// first backoff again, so its wait is not outlasted by a
			// backoff grown during the outage.
			bo.Reset()
		}
		t.Stop()
	}
}

// put makes the live object at rec.Name hold exactly the staged bytes of
// rec, verified by GCS (CRC32C sent) and confirmed from its reply.
func (a *Area) put(ctx context.Context, f *sfile, rec record) (gcs.Attrs, error) {
	object := a.objectName(rec.Name)
	seq := strconv.FormatUint(rec.Seq, 10)
	meta := map[string]string{MetaStaging: a.info.Staging, MetaSeq: seq}
	if rec.CutShort {
		meta[MetaCutShort] = "true"
	}
	opts := gcs.UploadOptions{CRC32C: rec.CRC32C, Metadata: meta,
		ContentType: mime.TypeByExtension(path.Ext(rec.Name))}
	st, err := a.opts.Remote.Stat(ctx, object)
	switch {
	case errors.Is(err, gcs.ErrNotFound):
		opts.IfAbsent = true
	case err != nil:
		return gcs.Attrs{}, err
	case st.Metadata[MetaStaging] == a.info.Staging && st.Metadata[MetaSeq] == seq && st.Size == rec.Size && st.CRC32C == rec.CRC32C:
		// This daemon, or the one before it, already uploaded this record.
		return st, nil
	default:
		// Replace exactly the generation seen: a precondition failure
		// means something else wrote meanwhile, and the loop looks again.
		opts.IfGeneration = st.Generation
	}
	attrs, err := a.opts.Remote.Upload(ctx, object, f.data, rec.Size, opts)
	if err != nil {
		return gcs.Attrs{}, err
	}
	if attrs.Size != rec.Size || (attrs.HasCRC32C && attrs.CRC32C != rec.CRC32C) {
		return gcs.Attrs{}, fmt.Errorf("output: gs://%s/%s#%d holds %d bytes with CRC32C %08x; staged %d bytes with %08x",
			a.opts.Bucket, object, attrs.Generation, attrs.Size, attrs.CRC32C, rec.Size, rec.CRC32C)
	}
	return attrs, nil
}

// finishLocked records an upload of rec that GCS confirmed.
func (a *Area) finishLocked(f *sfile, rec record, attrs gcs.Attrs) {
	if f.node != nil && f.rec.Seq == rec.Seq && f.rec.Name == rec.Name {
		// Durable. The record goes before the data, so a crash in between
		// leaves an orphan that recovery deletes, never a record without
		// its bytes.
		if err := a.j.drop(f.id); err != nil {
			a.log.Error("output: drop the journal record of a durable file", "path", rec.Name, "err", err)
		}
		n := f.node
		n.obj = &attrs
		f.up = stateDurable
		if f.writers == 0 {
			n.file = nil
			f.node = nil
		}
		// Else a writer still has it open (close(2) of a dup'ed descriptor
		// committed it): it stays in place, and a later write makes it
		// open again; the last writer's release detaches it.
		now := time.Now()
		seq, err := a.j.nextSeq()
		if err != nil {
			a.log.Error("output: durable event sequence", "err", err)
		}
		ev := DurableEvent{Seq: seq, Path: rec.Name, Object: attrs.Name, Generation: attrs.Generation, Size: attrs.Size,
			CRC32C: attrs.CRC32C, ClosedAt: f.closedAt, DurableAt: now}
		a.events = append(a.events, ev)
		a.opts.Metrics.OutputDurableAfter(context.Background(), ev.DurableAt.Sub(ev.ClosedAt))
		if len(a.events) > a.opts.RecentDurable {
			a.events = a.events[len(a.events)-a.opts.RecentDurable:]
		}
		a.last = max(a.last, seq)
		a.counts.durableFiles++
		a.counts.durableBytes += attrs.Size
		a.dropDataIfUnusedLocked(f)
		a.notifyLocked()
		a.log.Info("output durable", "path", rec.Name, "object", "gs://"+a.opts.Bucket+"/"+attrs.Name,
			"generation", attrs.Generation, "bytes", attrs.Size, "crc32c", fmt.Sprintf("%08x", attrs.CRC32C),
			"close_to_durable_ms", now.Sub(f.closedAt).Milliseconds(), "seq", seq)
		return
	}
	if f.node == nil || f.rec.Name != rec.Name {
		// Unlinked or renamed while the upload ran: the generation it
		// created at the old name is unwanted.
		if err := a.addTombLocked(rec.Name, attrs.Generation); err != nil {
			a.log.Error("output: journal the delete of a superseded upload", "object", attrs.Name, "err", err)
		}
		if n := a.peekLocked(rec.Name); n != nil && n.file == nil && n.obj != nil {
			n.obj = nil
			a.pruneLocked(n)
		}
		if f.node != nil && f.rec.State == stateClosed {
			f.up = ""
			a.enqueueLocked(work{f: f})
		}
		return
	}
	// Rewritten meanwhile: this generation is the live object until the
	// new content's upload replaces it.
	f.node.obj = &attrs
	f.up = ""
	if f.rec.State == stateClosed {
		// Its new content was committed while this upload ran, and that
		// commit's enqueue was folded into this upload: queue it now.
		a.enqueueLocked(work{f: f})
	}
}

// peekLocked finds the node at rel without listing anything.
func (a *Area) peekLocked(rel string) *node {
	n := a.root
	for _, c := range splitRel(rel) {
		if n.kids == nil {
			return nil
		}
		if n = n.kids[c]; n == nil {
			return nil
		}
	}
	return n
}

func splitRel(rel string) []string {
	var out []string
	for rel != "" {
		i := 0
		for i < len(rel) && rel[i] != '/' {
			i++
		}
		out = append(out, rel[:i])
		if i == len(rel) {
			break
		}
		rel = rel[i+1:]
	}
	return out
}

// deleteObject removes one generation, retrying transient failures.
func (a *Area) deleteObject(t *tomb) {
	bo := backoff.New(a.opts.InitialBackoff, a.opts.MaxBackoff)
	object := a.objectName(t.rec.Name)
	for attempt := 1; ; attempt++ {
		err := a.opts.Remote.Delete(a.ctx, object, t.rec.Gen)
		if errors.Is(err, gcs.ErrPrecondition) {
			err = nil // the generation is already gone or replaced
		}
		a.mu.Lock()
		if err == nil {
			if derr := a.j.drop(t.rec.ID); derr != nil {
				a.log.Error("output: drop a finished delete from the journal", "object", object, "err", derr)
			}
			t.done = true
			delete(a.tombs, t.rec.ID)
			a.mu.Unlock()
			a.log.Debug("output: deleted", "object", object, "generation", t.rec.Gen)
			return
		}
		if a.closed {
			a.mu.Unlock()
			return
		}
		a.counts.retries++
		a.mu.Unlock()
		if gcs.IsPermanent(err) {
			a.mu.Lock()
			t.failed = err.Error()
			a.notifyLocked()
			a.mu.Unlock()
			a.log.Error("output: delete failed permanently; it stays journalled and is retried at the next start",
				"object", object, "generation", t.rec.Gen, "err", err)
			return
		}
		d := bo.Next()
		a.log.Warn("output: delete failed; retrying", "object", object, "attempt", attempt, "err", err)
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// FileState is a file that is not durable yet, and why.
type FileState struct {
	Path     string
	Object   string
	State    string // open, queued, uploading, retrying, failed, interrupted, deleting
	Size     int64
	Error    string // the last upload error, for retrying and failed
	ClosedAt time.Time
}

// Status is the area's state.
type Status struct {
	Bucket, Prefix, StagingDir string
	StagedBytes, StagingBudget int64
	Counts                     map[string]int // files by state (FileState.State)
	DurableFiles, DurableBytes int64          // since the daemon started
	Retries, PermanentFailures int64
	LastDurableSeq             uint64
	Durable                    []DurableEvent // after the requested seq, oldest first
	NotDurable                 []FileState    // up to maxListed, by path
	NotDurableTotal            int
}

const maxListed = 1000

// Status reports the area's state and the durable events after since.
func (a *Area) Status(since uint64) Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Bucket: a.opts.Bucket, Prefix: a.opts.Prefix, StagingDir: a.opts.StagingDir,
		StagedBytes: a.space.usedNow(), StagingBudget: a.opts.StagingBytes, Counts: map[string]int{},
		DurableFiles: a.counts.durableFiles, DurableBytes: a.counts.durableBytes, Retries: a.counts.retries,
		PermanentFailures: a.counts.failures, LastDurableSeq: a.last, Durable: []DurableEvent{}}
	for _, ev := range a.events {
		if ev.Seq > since {
			st.Durable = append(st.Durable, ev)
		}
	}
	st.NotDurable = a.notDurableLocked()
	st.NotDurableTotal = len(st.NotDurable)
	for _, fs := range st.NotDurable {
		st.Counts[fs.State]++
	}
	if len(st.NotDurable) > maxListed {
		st.NotDurable = st.NotDurable[:maxListed]
	}
	return st
}

func (a *Area) notDurableLocked() []FileState {
	var out []FileState
	for _, f := range a.files {
		if f.node == nil || f.up == stateDurable {
			continue
		}
		errText := f.lastErr
		switch {
		case f.commitErr != "" && f.rec.State == stateOpen:
			errText = "close could not be journalled: " + f.commitErr
		case f.rec.State == stateCutShort:
			errText = "a write failed with ENOSPC before the file was closed; not uploaded as is"
		}
		out = append(out, FileState{Path: f.rec.Name, Object: a.objectName(f.rec.Name), State: f.stateLocked(),
			Size: f.size.Load(), Error: errText, ClosedAt: f.closedAt})
	}
	for _, t := range a.tombs {
		if !t.done {
			fs := FileState{Path: t.rec.Name, Object: a.objectName(t.rec.Name), State: StateDeleting}
			if t.failed != "" {
				fs.State, fs.Error = StateFailed, "delete: "+t.failed
			}
			out = append(out, fs)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Path < out[k].Path })
	return out
}

// FlushResult is what Flush found when it returned.
type FlushResult struct {
	// Durable is true when every file written so far is in GCS, verified,
	// and every delete is done.
	Durable    bool
	NotDurable []FileState
	TimedOut   bool
}

// Flush waits until every file written so far is durable, or ctx ends.
// Files that cannot progress on their own (interrupted, or failed without
// retryFailed) end the wait early. With retryFailed, failed uploads are
// tried again first.
func (a *Area) Flush(ctx context.Context, retryFailed bool) FlushResult {
	if retryFailed {
		a.recommit()
	}
	a.mu.Lock()
	if retryFailed {
		for _, t := range a.tombs {
			if t.failed != "" {
				t.failed = ""
				a.enqueueLocked(work{t: t})
			}
		}
		for _, f := range a.files {
			if f.node != nil && f.up == StateFailed && f.rec.State == stateClosed {
				f.up, f.lastErr = "", ""
				a.enqueueLocked(work{f: f})
			}
		}
	}
	for {
		nd := a.notDurableLocked()
		moving := false
		for _, fs := range nd {
			if fs.State != StateFailed && fs.State != StateInterrupted && fs.State != StateCutShort {
				moving = true
			}
		}
		if !moving || a.closed {
			a.mu.Unlock()
			return FlushResult{Durable: len(nd) == 0, NotDurable: nd}
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
			a.mu.Lock()
		case <-ctx.Done():
			a.mu.Lock()
			nd := a.notDurableLocked()
			a.mu.Unlock()
			return FlushResult{Durable: len(nd) == 0, NotDurable: nd, TimedOut: len(nd) > 0}
		}
	}
}

// recommit journals again the closes that could not be journalled
// (sfile.commitErr) of files no writer has open any more.
func (a *Area) recommit() {
	a.mu.Lock()
	var again []*sfile
	for _, f := range a.files {
		if f.node != nil && f.commitErr != "" && f.rec.State == stateOpen && f.writers == 0 {
			again = append(again, f)
		}
	}
	a.mu.Unlock()
	for _, f := range again {
		_ = a.commit(f, true) // a failure is logged and recorded again
	}
}

// reapAbandoned deletes the object an abandoned upload of rec may have
// created at rec's old name, recognised by this staging directory's id and
// rec's sequence number in its metadata.
func (a *Area) reapAbandoned(rec record) {
	st, err := a.opts.Remote.Stat(a.ctx, a.objectName(rec.Name))
	if err != nil || st.Metadata[MetaStaging] != a.info.Staging || st.Metadata[MetaSeq] != strconv.FormatUint(rec.Seq, 10) {
		return // not committed (or not ours): nothing to undo
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.addTombLocked(rec.Name, st.Generation); err != nil {
		a.log.Error("output: journal the delete of an abandoned upload", "object", st.Name, "err", err)
	}
	if n := a.peekLocked(rec.Name); n != nil && n.file == nil && n.obj != nil && n.obj.Generation == st.Generation {
		n.obj = nil
		a.pruneLocked(n)
	}
}

// enqueueLocked hands w to the uploaders and wakes them and flush. A file
// already queued, uploading or retrying is not queued twice: its worker
// acts on the file's state as it is when the worker gets to it.
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
