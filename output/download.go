package output

import (
	"context"
	"fmt"
	"os"

	"github.com/jitfs/jitfs/gcs"
)

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
