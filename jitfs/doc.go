// Package jitfs is the FUSE layer: go-fuse/v2 nodes that present a GCS
// bucket prefix as a read-only directory tree, backed by the cache package.
//
// # Namespace
//
// Objects map to files and "/"-delimited prefixes to directories, with no
// placeholder objects needed. A directory is listed (prefix + delimiter,
// paginated) the first time something looks inside it, and that listing
// answers every later lookup of its names, absent ones included, without a
// request per name. While a large directory is still being listed, a lookup
// does not wait for the whole listing: it asks for the one name directly.
//
// # Snapshot consistency
//
// The generation of each object is pinned when first seen and held for the
// mount's lifetime (or Options.MetadataTTL). Reads name that generation, so a
// render never mixes bytes of two versions; a pinned generation that is gone
// from the bucket fails reads with EIO and a log line naming the object.
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
