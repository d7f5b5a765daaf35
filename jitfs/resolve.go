package jitfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/jitfs/jitfs/cache"
)

// ErrNotFile is returned by Resolve for a directory.
var ErrNotFile = errors.New("jitfs: not a file")

// Resolve returns the object generation a path in the mount (relative to
// its root) reads, as the renderer will see it: the prefetch engine warms
// exactly the generation the tree has pinned. It resolves through the
// mount itself, so the kernel's dentry cache is warm for the renderer too.
// A missing path returns an error satisfying errors.Is(err, fs.ErrNotExist).
// It must not be called from inside a FUSE request of this mount.
func (f *FS) Resolve(ctx context.Context, rel string) (cache.Meta, error) {
	if f.mnt == "" {
		return cache.Meta{}, errors.New("jitfs: not mounted")
	}
	if err := ctx.Err(); err != nil {
		return cache.Meta{}, err
	}
	st, err := os.Stat(f.mnt + "/" + rel)
	if err != nil {
		return cache.Meta{}, err
	}
	if st.IsDir() {
		return cache.Meta{}, fmt.Errorf("%s: %w", rel, ErrNotFile)
	}
	in := f.root.EmbeddedInode()
	for _, name := range strings.Split(rel, "/") {
		if in = in.GetChild(name); in == nil {
			// The kernel answered from its cache and go-fuse has since
			// forgotten the node; cannot happen while the kernel holds
			// the dentry, but never guess.
			return cache.Meta{}, fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
		}
	}
	n, ok := in.Operations().(*fileNode)
	if !ok {
		return cache.Meta{}, fmt.Errorf("%s: %w", rel, ErrNotFile)
	}
	a := n.pinned()
	return cache.Meta{Bucket: f.opts.Remote.Bucket(), Name: a.Name, Gen: a.Generation, Size: a.Size,
		CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}, nil
}

// Cache returns the cache the filesystem reads through.
func (f *FS) Cache() *cache.Cache { return f.opts.Cache }

// Source returns the bucket the filesystem reads from.
func (f *FS) Source() cache.Source { return f.opts.Remote }
