package output

import (
	"fmt"
	"os"
	"path"
	"sort"
	"time"
)

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
