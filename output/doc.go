// Package output is the core of jitfs's writable output areas: a
// namespace over a GCS prefix whose files are staged on local disk,
// journalled, and uploaded to GCS when their last writer closes them,
// with nothing lost if the daemon is killed at any point. It knows
// nothing of FUSE: package jitfs adapts it to go-fuse (OutputFS), the way
// it adapts the read-only cache.
//
// # Namespace
//
// An Area is addressed by slash-separated paths relative to its root,
// which maps to Options.Prefix. Objects already under the prefix are
// listed (lazily, one delimiter listing per directory) and readable, read
// straight from GCS; files written here are read from staging. Create,
// write, truncate, rename (also over an existing file), unlink, mkdir and
// rmdir work as on a local disk, with three limits GCS imposes: an empty
// directory lives only in the daemon's memory; renaming a directory that
// holds uploaded objects fails with ErrCrossDir (EXDEV: mv copies
// instead); and modes, owners and times are not stored.
//
// # Staging and upload
//
// Each staged file is a data file plus a journal record. Open for writing
// journals the file as "open". The last writable handle's flush (close(2)
// in the writer) syncs the bytes, computes their CRC32C and journals the
// file as "closed" with its size and checksum before close returns; then
// it is queued. Workers upload it with the checksum sent (GCS rejects
// bytes that differ) and a generation precondition, check size and CRC32C
// in GCS's reply, and only then drop the record and the staged bytes and
// emit a DurableEvent (and one log line). Transient failures retry with
// capped exponential backoff for as long as the daemon runs; a permanent
// one (403, 400) leaves the file staged and "failed" until a Flush with
// retryFailed or a restart. Writing a file again while it uploads cancels
// that upload; the next close uploads the new bytes. Uploads and deletes
// of one name run one at a time, in order, so an older version never
// lands after a newer one.
//
// A rename is a journal update of the staged file's name; if the old name
// already had an object, a delete of that generation is journalled too.
// Unlink journals the delete of the object's generation before it
// returns. Deletes run in the background with a generation precondition.
//
// # On-disk format
//
// Options.StagingDir holds:
//
//	LOCK          flock: one daemon per staging directory
//	area.json     {"v":1,"bucket":B,"prefix":P,"staging_id":ID}; a directory
//	              is never replayed into another bucket or prefix
//	seq           the sequence high-water mark, leased in blocks of 4096
//	rec/ID.json   one record per staged file or pending delete
//	data/ID       the staged bytes of file ID
//
// A record is {"v":1,"id","kind":"file"|"delete","name","seq","state":
// "open"|"closed"|"interrupted"|"cut_short","size","crc32c","mode","mtime_ns",
// "closed_ns","gen"}. It is replaced atomically (temporary file, fsync,
// rename, fsync of the directory) and every write takes a new seq, so of
// two records naming one path the newer wins. A data file is created
// before its record and deleted after it, so recovery deletes data no
// record names. Uploaded objects carry metadata jitfs-staging (ID) and
// jitfs-seq: a restarted daemon that finds its own upload already live
// does not repeat it.
//
// # Crash semantics
//
// After a SIGKILL at any point, New with the same directory resumes every
// closed file whose bytes still match their record's size and CRC32C, and
// every pending delete. A file that was open (a writer had not closed it)
// is not uploaded: a renderer writing straight to its final name would
// publish a truncated frame. It becomes "interrupted": kept staged,
// listed and readable, reported by Status and Flush as not durable, until
// something overwrites or unlinks it through the mount. A closed file
// whose bytes no longer match is treated the same way. A crash between
// GCS committing an upload and the daemon recording it, for a file renamed
// or removed during that upload, can leave the superseded object behind;
// nothing is ever lost.
//
// # Staging budget
//
// Options.StagingBytes bounds the bytes staged. A write that would pass
// it waits up to Options.SpaceWait for uploads to free space, then fails
// with ErrNoSpace (ENOSPC) and one log line naming the file. A full disk
// under the staging directory is treated the same way: the write waits up
// to SpaceWait for uploads to free space, retries, then fails.
//
// A file closed after one of its writes failed for want of space is cut
// short: journalled as "cut_short", kept staged, never uploaded as is
// (unless Options.UploadCutShort, which uploads it marked jitfs-cut-short)
// until a write covers the failed range or a truncate drops it. A close
// that cannot be journalled is reported failed, so nothing waits on it; a
// Flush with retryFailed journals it again.
//
// # Concurrency
//
// An Area is safe for concurrent use. Area.mu guards the namespace, the
// journal-side state and the queue, and is held across record fsyncs (a
// change is acknowledged once journalled, in order); each staged file's
// own mutex serialises its data writes and commit. Lock order: file, then
// area. No lock is held across a GCS call.
package output
