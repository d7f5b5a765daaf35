// Package jitfs is the FUSE layer: go-fuse/v2 nodes that present a GCS
// bucket prefix as a read-only directory tree, backed by the cache package.
//
// # Namespace
//
// Which names exist and which generation each reads is package namespace's:
// a FUSE-free snapshot of the bucket prefix (listings, pins, absent names).
// dirNode and fileNode are thin adapters over it, as the prefetch engine's
// Resolve and the hook API's ListDir are, so neither goes through the
// kernel, and a tree whose inodes the kernel forgot is served again without
// a request. Objects map to files and "/"-delimited prefixes to
// directories; see that package for how listing works.
//
// # Snapshot consistency
//
// The generation of each object is pinned when the namespace first sees it
// and held for its lifetime (or Options.MetadataTTL). A fileNode keeps the
// generation it was looked up with, and an open handle the one it opened.
// Reads name that generation, so a render never mixes bytes of two
// versions; a pinned generation that is gone from the bucket fails reads
// with EIO and a log line naming the object.
//
// Because content is immutable per snapshot, the kernel is told to cache
// entries, attributes, negative lookups and file pages for long periods, and
// fully cached files are handed to the kernel with FUSE passthrough where the
// kernel supports it.
//
// # Output areas
//
// OutputFS (output.go) is the read-write front end of an output.Area, a
// separate mount: each FUSE operation becomes one call into the area by
// path, and the area owns staging, journal and uploads. Its errors become
// errnos in OutputFS.errno, the output side's one mapping.
//
// # Errors
//
// errno.go is the one place where errors become syscall.Errno; the original
// error is logged there, once, with the object, generation, offset and length.
package jitfs
