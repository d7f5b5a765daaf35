package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// OpenFlags says how a file is opened.
type OpenFlags struct {
	Write     bool // O_WRONLY or O_RDWR
	Create    bool // O_CREAT
	Exclusive bool // O_EXCL
	Truncate  bool // O_TRUNC
	Mode      uint32
}

// Handle is an open file: a staged file, or (read-only) an object that
// exists only in GCS.
type Handle struct {
	a        *Area
	f        *sfile
	obj      gcs.Attrs
	write    bool
	released atomic.Bool
	// wrote is set by this handle's first write: a flush (close of one
	// descriptor) commits only a handle that wrote, so the close of a
	// dup'ed descriptor right after open (a shell's redirection) does not
	// publish an empty file.
	wrote atomic.Bool
}

// Open opens (or creates) the file rel. Opening a staged file for writing
// makes it open again (journalled) and cancels its upload; its last
// writable handle's close commits and queues it. Opening an uploaded
// object for writing without truncation first stages its bytes.
func (a *Area) Open(ctx context.Context, rel string, fl OpenFlags) (*Handle, error) {
	p, base, err := a.parentOf(ctx, rel)
	if err != nil {
		return nil, err
	}
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return nil, ErrClosed
		}
		n := p.kids[base]
		if n == nil || !n.present() {
			if !fl.Create {
				a.mu.Unlock()
				return nil, ErrNotExist
			}
			h, err := a.createLocked(p, base, rel, fl.Mode)
			a.mu.Unlock()
			return h, err
		}
		if n.isDir() {
			a.mu.Unlock()
			return nil, ErrIsDir
		}
		if fl.Create && fl.Exclusive {
			a.mu.Unlock()
			return nil, ErrExist
		}
		if f := n.file; f != nil {
			if fl.Write {
				if err := a.reopenLocked(f); err != nil {
					a.mu.Unlock()
					return nil, err
				}
			}
			h := a.handleLocked(f, fl.Write)
			a.mu.Unlock()
			if fl.Write && fl.Truncate {
				if err := h.Truncate(ctx, 0); err != nil {
					h.Release()
					return nil, err
				}
			}
			return h, nil
		}
		obj := *n.obj
		if !fl.Write {
			a.mu.Unlock()
			return &Handle{a: a, obj: obj}, nil
		}
		if fl.Truncate {
			h, err := a.createLocked(p, base, rel, fl.Mode)
			a.mu.Unlock()
			return h, err
		}
		a.mu.Unlock()
		// Modify an uploaded object in place: stage its bytes first.
		f, err := a.download(ctx, obj, rel)
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		n = p.kids[base]
		if n == nil || n.file != nil || n.obj == nil || n.obj.Generation != obj.Generation {
			a.discardLocked(f) // changed meanwhile: start over
			a.mu.Unlock()
			continue
		}
		if err := a.j.put(&f.rec); err != nil {
			a.discardLocked(f)
			a.mu.Unlock()
			return nil, err
		}
		f.open.Store(true)
		n.file, f.node = f, n
		a.files[f.id] = f
		h := a.handleLocked(f, true)
		a.notifyLocked()
		a.mu.Unlock()
		return h, nil
	}
}

// createLocked stages a new, empty, open file at p/base. The data file
// exists before the record names it, so a crash in between leaves only an
// orphan that recovery deletes.
func (a *Area) createLocked(p *node, base, rel string, mode uint32) (*Handle, error) {
	id := a.nextID
	a.nextID++
	now := time.Now()
	f := &sfile{id: id, rec: record{ID: id, Kind: kindFile, Name: rel, State: stateOpen, Mode: mode & 0o777, MtimeNS: now.UnixNano()}}
	data, err := os.OpenFile(a.j.dataPath(id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("output: stage %s: %w", rel, err)
	}
	f.data = data
	if err := a.j.put(&f.rec); err != nil {
		data.Close()
		os.Remove(a.j.dataPath(id))
		return nil, err
	}
	f.open.Store(true)
	n := p.kids[base]
	if n == nil || n.isDir() {
		n = &node{name: base, parent: p}
		p.kids[base] = n
	}
	if old := n.file; old != nil {
		a.unlinkStagedLocked(old)
	}
	n.file, f.node, n.mtime = f, n, now
	a.files[id] = f
	a.notifyLocked()
	return a.handleLocked(f, true), nil
}

func (a *Area) handleLocked(f *sfile, write bool) *Handle {
	f.handles++
	if write {
		f.writers++
	}
	return &Handle{a: a, f: f, write: write}
}

// reopenLocked journals that f is being written again, and stops an
// upload of its previous content: GCS would reject the mixed bytes, and
// the new close uploads anyway.
func (a *Area) reopenLocked(f *sfile) error {
	if f.rec.State == stateOpen {
		return nil
	}
	rec := f.rec
	rec.State = stateOpen
	if err := a.j.put(&rec); err != nil {
		return err
	}
	f.rec = rec
	f.open.Store(true)
	if f.cancel != nil {
		f.cancel()
	}
	if f.up == StateFailed || f.up == stateDurable {
		f.up, f.lastErr = "", ""
	}
	a.notifyLocked()
	return nil
}

// ReadAt reads staged bytes, or the object's from GCS.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if h.f == nil {
		if off >= h.obj.Size {
			return 0, nil
		}
		p = p[:min(int64(len(p)), h.obj.Size-off)]
		if err := h.a.opts.Remote.ReadRange(ctx, h.obj.Name, h.obj.Generation, off, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	n, err := h.f.data.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// WriteAt writes staged bytes. Growing the file takes staging budget,
// waiting for uploads to free some if needed.
func (h *Handle) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if !h.write || h.f == nil {
		return 0, ErrReadOnly
	}
	f := h.f
	h.wrote.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open.Load() {
		// A write through a handle whose file was committed (a dup'ed fd
		// closed first): the file is being written again.
		h.a.mu.Lock()
		err := error(nil)
		if f.node != nil {
			err = h.a.reopenLocked(f)
		}
		h.a.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	end := off + int64(len(p))
	var n int
	var err error
	if grow := end - f.size.Load(); grow > 0 {
		if err := h.a.space.reserve(ctx, grow, h.a.opts.SpaceWait); err != nil {
			f.markCutLocked(off, end, err)
			return 0, h.a.noSpace(f.rec.Name, err)
		}
		n, err = h.a.writeData(ctx, f, p, off)
		f.writeGen++
		if got := off + int64(n); got > f.size.Load() {
			h.a.space.release(end - got)
			f.size.Store(got)
		} else {
			h.a.space.release(grow)
		}
	} else {
		n, err = h.a.writeData(ctx, f, p, off)
		f.writeGen++
	}
	if err != nil {
		f.markCutLocked(off+int64(n), end, err)
		err = h.a.noSpace(f.rec.Name, err)
	} else if f.cutShort.Load() && off <= f.cutAt && end >= f.cutEnd {
		// The writer wrote the range that failed again, and it went in.
		f.cutShort.Store(false)
	}
	return n, err
}

// markCutLocked records a write of [off,end) that failed for want of space:
// closed as it is, the file is not the file its writer meant to write.
func (f *sfile) markCutLocked(off, end int64, err error) {
	if !errors.Is(err, ErrNoSpace) || f.cutShort.Load() {
		return
	}
	f.cutAt, f.cutEnd = off, end
	f.cutShort.Store(true)
}

// writeData writes staged bytes. A full disk under the staging directory
// is treated like a full staging budget: the writer waits up to SpaceWait
// for uploads to free space and retries, and only then gets ErrNoSpace.
func (a *Area) writeData(ctx context.Context, f *sfile, p []byte, off int64) (int, error) {
	var deadline time.Time
	done := 0
	for {
		n, err := f.data.WriteAt(p[done:], off+int64(done))
		done += n
		if err == nil || !(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
			return done, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(a.opts.SpaceWait)
		}
		if !a.space.waitFreed(ctx, deadline) {
			return done, fmt.Errorf("%w: staging disk: %v", ErrNoSpace, err)
		}
	}
}

// Truncate sets the staged file's size.
func (h *Handle) Truncate(ctx context.Context, size int64) error {
	if !h.write || h.f == nil {
		return ErrReadOnly
	}
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.size.Load()
	if size > cur {
		if err := h.a.space.reserve(ctx, size-cur, h.a.opts.SpaceWait); err != nil {
			f.markCutLocked(cur, size, err)
			return h.a.noSpace(f.rec.Name, err)
		}
	}
	if err := f.data.Truncate(size); err != nil {
		if size > cur {
			h.a.space.release(size - cur)
		}
		return err
	}
	if size < cur {
		h.a.space.release(cur - size)
	}
	if size <= f.cutAt {
		// What failed to be written is cut off: the file is what is left.
		f.cutShort.Store(false)
	}
	f.size.Store(size)
	f.writeGen++
	return nil
}

// Size is the handle's current file size.
func (h *Handle) Size() int64 {
	if h.f == nil {
		return h.obj.Size
	}
	return h.f.size.Load()
}

// Info describes the handle's file, which may have been unlinked.
func (h *Handle) Info() Info {
	if h.f == nil {
		return Info{Size: h.obj.Size, Mode: 0o644, Mtime: h.obj.Updated}
	}
	h.a.mu.Lock()
	defer h.a.mu.Unlock()
	mt := time.Unix(0, h.f.rec.MtimeNS)
	if n := h.f.node; n != nil {
		mt = n.mtime
	}
	return h.a.fileInfoLocked(h.f, mt)
}

// Writable reports whether the handle was opened for writing.
func (h *Handle) Writable() bool { return h.write }

// Fsync makes the staged bytes durable on local disk.
func (h *Handle) Fsync() error {
	if h.f == nil || !h.write {
		return nil
	}
	return h.f.data.Sync()
}

// Flush is close(2) on one descriptor of the handle. When no other
// writable handle has the file open, the file is committed: its bytes are
// synced, their CRC32C journalled with state closed, and its upload
// queued, all before close returns, so a daemon killed right after still
// uploads it.
func (h *Handle) Flush() error {
	if h.f == nil || !h.write || h.released.Load() || !h.wrote.Load() {
		return nil
	}
	return h.a.commit(h.f, false)
}

// Release ends the handle. The last writable handle commits the file if
// Flush did not.
func (h *Handle) Release() error {
	if h.f == nil || h.released.Swap(true) {
		return nil
	}
	a, f := h.a, h.f
	a.mu.Lock()
	f.handles--
	last := false
	if h.write {
		f.writers--
		last = f.writers == 0
	}
	a.mu.Unlock()
	var err error
	if last {
		err = a.commit(f, true)
	}
	a.mu.Lock()
	if last && f.node != nil && f.up == stateDurable && f.rec.State == stateClosed {
		// Uploaded while this handle was still open: detach it now.
		f.node.file = nil
		f.node = nil
	}
	a.dropDataIfUnusedLocked(f)
	a.mu.Unlock()
	return err
}

// commit closes f: fsync, CRC32C, journal, queue. With final false it is
// a flush, which commits only when one writable handle remains (this
// one); the others' closes commit later.
func (a *Area) commit(f *sfile, final bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a.mu.Lock()
	if f.node == nil || f.rec.State != stateOpen || (!final && f.writers > 1) || f.data == nil {
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	size := f.size.Load()
	if err := f.data.Sync(); err != nil {
		return fmt.Errorf("output: sync staged %s: %w", f.rec.Name, err)
	}
	crc, err := crcOf(f.data, size)
	if err != nil {
		return fmt.Errorf("output: checksum staged %s: %w", f.rec.Name, err)
	}
	// The data file's directory entry, for a power loss rather than a
	// killed daemon.
	if err := syncDir(filepath.Dir(a.j.dataPath(f.id))); err != nil {
		return fmt.Errorf("output: sync staging directory: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if f.node == nil || f.rec.State != stateOpen {
		return nil
	}
	now := time.Now()
	rec := f.rec
	rec.State, rec.Size, rec.CRC32C, rec.ClosedNS = stateClosed, size, crc, now.UnixNano()
	if f.node != nil {
		rec.MtimeNS = f.node.mtime.UnixNano()
	}
	cut := f.cutShort.Load() && !a.opts.UploadCutShort
	rec.CutShort = f.cutShort.Load() && a.opts.UploadCutShort
	if cut {
		rec.State = stateCutShort
	}
	if err := a.j.put(&rec); err != nil {
		// Reported failed, so nothing waits for this close any more; a
		// flush with retryFailed journals it again.
		f.commitErr = err.Error()
		a.notifyLocked()
		a.log.Error("output: cannot journal a closed file; not uploaded until a flush with --retry-failed journals it",
			"path", rec.Name, "err", err)
		return err
	}
	f.commitErr = ""
	f.rec = rec
	f.open.Store(false)
	f.closedAt = now
	f.node.mtime = now
	if cut {
		a.notifyLocked()
		a.log.Error("output: a write to this file failed with ENOSPC before it was closed; kept staged, not uploaded as is (write it again, truncate or remove it, or run with --upload-cut-short)",
			"path", rec.Name, "size", size, "failed_at", f.cutAt)
		return nil
	}
	a.enqueueLocked(work{f: f})
	return nil
}

// Truncate sets the size of rel without an open handle (truncate(2)).
func (a *Area) Truncate(ctx context.Context, rel string, size int64) error {
	h, err := a.Open(ctx, rel, OpenFlags{Write: true, Truncate: size == 0})
	if err != nil {
		return err
	}
	if size != 0 {
		err = h.Truncate(ctx, size)
	}
	return errors.Join(err, h.Release())
}
