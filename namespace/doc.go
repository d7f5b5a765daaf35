// Package namespace is the read-only view of a bucket prefix that a jitfs
// mount serves: which names exist, which are directories, and which object
// generation each file name reads. It knows nothing of FUSE; package jitfs
// adapts it to go-fuse nodes, the prefetch engine resolves paths through
// it, and the hook API lists directories with it.
//
// # Listing
//
// Objects map to files and "/"-delimited prefixes to directories, with no
// placeholder objects needed. A directory is listed (prefix + delimiter,
// paginated) the first time something looks inside it, and that listing
// answers every later lookup of its names, absent ones included, without a
// request per name. While a large directory is still being listed, a lookup
// does not wait for the whole listing: it asks for the one name directly
// (a one-item listing of name/ and a stat of name), and remembers a name
// found absent that way in a bounded negative cache. A prefix and an object
// of the same name are one directory: the prefix wins, as in every POSIX
// view of a bucket, and the object is unreachable.
//
// # Snapshot
//
// A Namespace is one snapshot. The generation of each object is pinned the
// first time the Namespace sees it and held for its lifetime, or until a
// re-list after Options.TTL replaces it. The state lives here, not in the
// kernel's inodes: when the kernel forgets inodes (memory pressure,
// drop_caches) nothing is re-listed, and inode numbers stay the same. Several
// views can share one cache and one bucket by each holding its own
// Namespace (a job's pins are its own); the state per directory is plain
// data (name, kind, attributes, inode number) so it can be persisted.
//
// # Concurrency
//
// Every method is safe for concurrent use. Namespace.mu guards only the map
// of directories; each directory's listing state has its own mutex, never
// held across a request to GCS. A listing runs in its own goroutine under
// the Namespace's context, not a caller's: a lookup that gives up (its
// context ends) leaves the listing running for the next caller, and Close
// cancels every listing still running.
package namespace
