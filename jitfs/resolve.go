package jitfs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/namespace"
)

// ErrNotFile is returned by Resolve for a directory.
var ErrNotFile = errors.New("jitfs: not a file")

// Resolve returns the object generation a path in the mount (relative to
// its root) reads, as the renderer will see it: the prefetch engine warms
// exactly the generation the namespace has pinned. It asks the namespace
// directly (never the kernel), so it may be called from anywhere, a FUSE
// request of this mount included. A missing path returns an error
// satisfying errors.Is(err, fs.ErrNotExist).
func (f *FS) Resolve(ctx context.Context, rel string) (cache.Meta, error) {
	e, err := f.ns.Lookup(ctx, rel)
	if err != nil {
		return cache.Meta{}, err
	}
	if e.IsDir {
		return cache.Meta{}, fmt.Errorf("%s: %w", rel, ErrNotFile)
	}
	a := e.Attrs
	return cache.Meta{Bucket: f.opts.Remote.Bucket(), Name: a.Name, Gen: a.Generation, Size: a.Size,
		CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}, nil
}

// ListDir names the entries of a directory of the mount, given as an
// absolute path under the mountpoint, from the namespace (the hook API
// finds UDIM tiles with it without a round trip through the kernel).
func (f *FS) ListDir(dir string) ([]string, error) {
	rel, err := filepath.Rel(f.mnt, filepath.Clean(dir))
	if f.mnt == "" || err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("jitfs: %s is not inside the mount %s: %w", dir, f.mnt, namespace.ErrNotExist)
	}
	if rel == "." {
		rel = ""
	}
	// Bounded like a FUSE readdir of the same directory would be.
	ctx, cancel := f.opContext(context.Background())
	defer cancel()
	ents, err := f.ns.List(ctx, rel)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}
