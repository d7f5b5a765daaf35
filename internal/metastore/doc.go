// Package metastore keeps a node daemon's metadata across restarts: the
// jobs it serves and every directory listing their namespaces completed,
// with the object generations those listings pinned. A restarted daemon
// hands each job's namespace its listings back (Store.Listings is a
// namespace.Store), so it serves what it had listed with no list or stat
// request, and each job still reads the generations it pinned.
//
// # Why bbolt
//
// The store is one bbolt file. A well-kept embedded store gives crash
// atomicity (copy-on-write pages, two checksummed meta pages: a torn
// commit falls back to the one before), a file lock against a second
// daemon on the same cache, and a consistency check, none of which a
// format of our own would have without years of the same bugs. Pebble
// (an LSM tree) is built for write-heavy data far larger than this: a
// node's listings are small, written once per directory per job and read
// at restart, which one B+tree file read through mmap serves without
// compactions or a directory of files to keep consistent. Layout:
// bucket "meta" holds the format version, "jobs" maps a job ID to its
// record, and "listings" holds a bucket per job mapping source+"\x00"+dir
// to a listing.
//
// # Never a wrong generation
//
// Every record is a version byte, a varint payload and a CRC32C. The CRC
// covers the record's identity too (job, source, directory): bbolt
// checksums only its meta pages, so a damaged data page could otherwise
// hand a directory another directory's (or another job's) listing, whose
// generations are wrong for it. A record that fails is dropped and the
// directory listed again from GCS.
//
// Open checks the whole file before serving from it: bbolt's own open
// (meta checksums), the format version, a bounds check of every page of
// the tree read from the file with plain reads, a walk reading every
// record and its CRC, and tx.Check (page references, free list, key
// order). A file failing them is logged, renamed to Path+".corrupt" and
// replaced by an empty store; damaged records in an otherwise sound file
// are deleted alone. bbolt follows page numbers and key lengths into its
// memory map unchecked, and a page past the end of a truncated file
// faults: every read here runs with debug.SetPanicOnFault and a recover,
// so damage is a reason to rebuild, not a crash. tx.Check reads in a
// goroutine of its own, where that cannot be arranged; the bounds check
// (pagecheck.go) runs first so that Check never meets a page that would
// fault, or a cycle of pages to recurse on forever. All of it costs tens
// of milliseconds for 100,000 objects (BenchmarkReopen100k); the damage
// tests try some thousands of damaged files (-corrupt-seeds).
//
// # Writes
//
// A namespace saves a listing with a directory's mutex held, so SaveDir
// only queues it. One writer goroutine commits whatever is queued in one
// transaction (one fsync per batch, not per directory). A full queue drops
// a listing (counted in Dropped): that directory is listed again after a
// restart, nothing worse. Job records go through the same queue but wait
// for their commit; being one FIFO, a listing queued before DeleteJob is
// applied before the delete, and one queued after is skipped because a
// listing is written only while its job has a record, so a deleted job is
// never brought back.
package metastore
