package output

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Record kinds and file states as the journal stores them.
const (
	kindFile   = "file"
	kindDelete = "delete"

	stateOpen        = "open"        // a writer has the file open; its bytes are not final
	stateClosed      = "closed"      // the last writer closed it: size and CRC32C are final
	stateInterrupted = "interrupted" // it was open when a daemon died: never uploaded as is
	stateCutShort    = "cut_short"   // closed after a write to it failed for want of space: never uploaded as is
)

const recordVersion = 1

// record is one journal entry: a staged file, or an object to delete.
// Each is its own small JSON file, replaced atomically, so a crash leaves
// either the old or the new version and never a torn one.
type record struct {
	V    int    `json:"v"`
	ID   uint64 `json:"id"`
	Kind string `json:"kind"`
	// Name is the path relative to the area's root ("shot/f.0001.png");
	// the object is the area's prefix followed by Name.
	Name string `json:"name"`
	// Seq orders records: every write of a record takes a new, larger
	// one, so of two records naming one file the larger is the newer.
	Seq uint64 `json:"seq"`

	// Files.
	State    string `json:"state,omitempty"`
	Size     int64  `json:"size"`
	CRC32C   uint32 `json:"crc32c"`
	Mode     uint32 `json:"mode,omitempty"`
	MtimeNS  int64  `json:"mtime_ns,omitempty"`
	ClosedNS int64  `json:"closed_ns,omitempty"`
	// CutShort: closed after a write failed with ENOSPC and uploaded anyway
	// (Options.UploadCutShort); the object is marked so.
	CutShort bool `json:"cut_short,omitempty"`

	// Deletes: the generation to remove; another live generation is left.
	Gen int64 `json:"gen,omitempty"`
}

// journal is the staging directory: records, data files, the sequence
// lease and the lock. Its methods do no locking of their own; the Area
// serialises record writes.
type journal struct {
	dir  string
	lock *os.File
	// seqNext is the next sequence number to hand out; seqLease the
	// high-water mark on disk, never below seqNext.
	seqNext, seqLease uint64
}

const seqLeaseBlock = 4096

// areaInfo is STAGING/area.json: which bucket and prefix the staged
// records belong to, so a staging directory is never replayed into
// another area.
type areaInfo struct {
	V       int    `json:"v"`
	Bucket  string `json:"bucket"`
	Prefix  string `json:"prefix"`
	Staging string `json:"staging_id"` // random; stored on uploaded objects
}

func openJournal(dir, bucket, prefix string) (*journal, areaInfo, error) {
	for _, d := range []string{dir, filepath.Join(dir, "rec"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, areaInfo{}, fmt.Errorf("output: staging directory: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, areaInfo{}, fmt.Errorf("output: staging directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, areaInfo{}, fmt.Errorf("%w: %s", ErrStagingBusy, dir)
		}
		return nil, areaInfo{}, fmt.Errorf("output: lock staging directory %s: %w", dir, err)
	}
	j := &journal{dir: dir, lock: lf}
	info, err := j.loadAreaInfo(bucket, prefix)
	if err != nil {
		j.close()
		return nil, areaInfo{}, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "seq")); err == nil {
		n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			j.close()
			return nil, areaInfo{}, fmt.Errorf("output: %s/seq is corrupt: %q", dir, b)
		}
		j.seqNext, j.seqLease = n, n
	} else if !errors.Is(err, os.ErrNotExist) {
		j.close()
		return nil, areaInfo{}, fmt.Errorf("output: read sequence lease: %w", err)
	}
	return j, info, nil
}

func (j *journal) loadAreaInfo(bucket, prefix string) (areaInfo, error) {
	p := filepath.Join(j.dir, "area.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		info := areaInfo{V: 1, Bucket: bucket, Prefix: prefix, Staging: randomID()}
		b, _ := json.Marshal(info)
		if err := writeFileAtomic(p, b); err != nil {
			return areaInfo{}, fmt.Errorf("output: staging directory %s is not writable: %w", j.dir, err)
		}
		return info, nil
	}
	if err != nil {
		return areaInfo{}, fmt.Errorf("output: %w", err)
	}
	var info areaInfo
	if err := json.Unmarshal(b, &info); err != nil || info.Staging == "" {
		return areaInfo{}, fmt.Errorf("output: %s is corrupt", p)
	}
	if info.Bucket != bucket || info.Prefix != prefix {
		return areaInfo{}, fmt.Errorf("%w: %s holds outputs of gs://%s/%s, not gs://%s/%s", ErrStagingMismatch,
			j.dir, info.Bucket, info.Prefix, bucket, prefix)
	}
	return info, nil
}

func (j *journal) close() {
	if j.lock != nil {
		j.lock.Close() // releases the flock
		j.lock = nil
	}
}

// nextSeq hands out a sequence number, extending the lease on disk first
// so that numbers never repeat across restarts.
func (j *journal) nextSeq() (uint64, error) {
	if j.seqNext == 0 {
		j.seqNext = 1
	}
	if j.seqNext >= j.seqLease {
		lease := j.seqNext + seqLeaseBlock
		if err := writeFileAtomic(filepath.Join(j.dir, "seq"), []byte(strconv.FormatUint(lease, 10)+"\n")); err != nil {
			return 0, fmt.Errorf("output: extend sequence lease: %w", err)
		}
		j.seqLease = lease
	}
	n := j.seqNext
	j.seqNext++
	return n, nil
}

func (j *journal) recPath(id uint64) string {
	return filepath.Join(j.dir, "rec", strconv.FormatUint(id, 10)+".json")
}

func (j *journal) dataPath(id uint64) string {
	return filepath.Join(j.dir, "data", strconv.FormatUint(id, 10))
}

// put writes r durably, with a fresh sequence number.
func (j *journal) put(r *record) error {
	seq, err := j.nextSeq()
	if err != nil {
		return err
	}
	r.V, r.Seq = recordVersion, seq
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(j.recPath(r.ID), b); err != nil {
		return fmt.Errorf("output: journal %s: %w", r.Name, err)
	}
	return nil
}

// drop removes a record durably.
func (j *journal) drop(id uint64) error {
	if err := os.Remove(j.recPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("output: journal: %w", err)
	}
	return syncDir(filepath.Join(j.dir, "rec"))
}

// load reads every record. Unparsable ones are reported and left on disk
// (never deleted: they may name data someone needs).
func (j *journal) load() (recs []*record, bad []string, err error) {
	dir := filepath.Join(j.dir, "rec")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("output: read journal: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			os.Remove(filepath.Join(dir, name)) // a temporary record a crash left
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, fmt.Errorf("output: read journal: %w", err)
		}
		var r record
		id, perr := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64)
		if perr != nil || json.Unmarshal(b, &r) != nil || r.ID != id || r.V != recordVersion || r.Name == "" ||
			(r.Kind != kindFile && r.Kind != kindDelete) {
			bad = append(bad, filepath.Join(dir, name))
			continue
		}
		if r.Seq >= j.seqNext {
			// The lease is written before a number is used, so this only
			// happens if the seq file was lost; never reuse a number.
			j.seqNext, j.seqLease = r.Seq+1, r.Seq+1
		}
		recs = append(recs, &r)
	}
	return recs, bad, nil
}

// dataIDs lists the data files present.
func (j *journal) dataIDs() (map[uint64]bool, error) {
	ents, err := os.ReadDir(filepath.Join(j.dir, "data"))
	if err != nil {
		return nil, fmt.Errorf("output: read staged data: %w", err)
	}
	ids := map[uint64]bool{}
	for _, e := range ents {
		if id, err := strconv.ParseUint(e.Name(), 10, 64); err == nil {
			ids[id] = true
		}
	}
	return ids, nil
}

// writeFileAtomic replaces p with b: temporary file, fsync, rename, fsync
// of the directory. A crash leaves the old or the new content.
func writeFileAtomic(p string, b []byte) error {
	dir, base := filepath.Split(p)
	tmp := filepath.Join(dir, "."+base+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcOf reads size bytes of f and returns their CRC32C, failing if the
// file is shorter.
func crcOf(f io.ReaderAt, size int64) (uint32, error) {
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, io.NewSectionReader(f, 0, size))
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("output: staged data is %d bytes, want %d", n, size)
	}
	return h.Sum32(), nil
}
