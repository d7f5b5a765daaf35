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
// # Listing ahead
//
// With Options.ListAhead, a directory met cold is listed as one flat
// listing of its whole prefix (no delimiter, up to ListAhead objects in
// pages fetched in order), from which the listings of the directory and of
// every subdirectory whose names it covered are built: GCS lists in name
// order, so a prefix P/ is complete once a name past it has been returned,
// or the listing ended. A lookup five directories deep in a small tree
// thus costs one request, not six. Past the bound the directory is also
// listed with a delimiter, as without listing ahead, so correctness never
// depends on the bound; the directories the flat listing stopped inside
// keep the names it saw, enough for a lookup of one of them. When a
// directory's listing is done, its first few unlisted subdirectories are
// listed in the background, so a walker's next step is listed before it
// gets there. Directories completed ahead are listings like any other:
// they pin what they saw, go to the Store, and are shared through
// SharedListings under the same rule. Stats.Ahead counts what it spent
// and saved.
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
