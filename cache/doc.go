// Package cache is jitfs's local-SSD cache of remote objects. It knows
// nothing of FUSE: the jitfs package opens a Handle per open file and reads
// through it; the cache fetches missing ranges from a Source (the GCS
// adapter) and keeps them on disk, shared by every reader on the node.
//
// # Model
//
// Data is keyed by (bucket, object, generation), so a cached byte never
// needs invalidating: a new generation is a new key. Each object generation
// has one sparse data file laid out exactly like the object, so a fully
// cached object can be handed to the kernel for FUSE passthrough, and a
// journal that records which byte ranges of the data file are valid.
//
// Reads are served in blocks (64 KiB by default). A random read fetches just
// the blocks it touches; a sequential reader is detected per handle (its
// reads may arrive out of order by up to ReorderWindow, as the kernel sends
// them in parallel) and fetched ahead in whole parts (8 MiB by default) with
// parallel ranged GETs, bounded per handle and globally. Objects up to WholeObjectMax are fetched
// whole in one request and checked against their CRC32C before any byte is
// served. Larger objects are served as their ranges arrive and checked when
// assembled (GCS checksums whole objects only); a late mismatch is logged
// with the readers it reached (Handle.SetReader) and fails their handles'
// next reads. Options.Strict instead makes a read wait for the whole object
// and its check. docs/integrity.md has the threat model.
//
// # On-disk format
//
//	DIR/LOCK                     flock held by the one daemon using DIR; holds its pid
//	DIR/objects/HH/KEY.jnl       journal (text, append-only)
//	DIR/objects/HH/KEY.data      sparse data file, same offsets as the object
//
// KEY is the hex SHA-256 of "bucket\x00object\x00generation" and HH its first
// two digits. A journal's first line is a JSON header naming the object
// (format version, bucket, object, generation, size, CRC32C). Each further
// line is written with one append after the bytes it describes are in the
// data file:
//
//	R START END CRC32C     bytes [START,END) are valid; CRC32C (hex) of them
//	C                      the whole object was verified against its CRC32C
//
// A line without its trailing newline (a crash mid-append) is ignored, so a
// range counts as present only once fully written. After a restart every
// range is "unverified": its CRC32C is checked the first time a read touches
// it (a complete object is checked whole when first opened), so even a torn
// write after power loss is refetched rather than served. Startup reads no
// file contents: it lists the object directories and stats the data files.
//
// An object's two files are open only while it is in use: a Handle open, a
// fill in flight, or a whole-object verification running. A daemon that has
// read 100k files therefore holds descriptors for the files open now, not
// for every file it has cached. What is present stays in memory, so using an
// idle object again reopens its files without re-reading its journal.
//
// # Usage by prefix
//
// TrackPrefix makes the cache count the bytes it holds under a bucket
// prefix, a counter per prefix moved with every change of an object's
// bytes (usage.go), so the node daemon reports per-source bytes without
// walking the cache. Objects found at start are counted once a background
// pass has read their journal headers (Usage's complete).
//
// # Concurrency
//
// Lock order: Cache.mu, then Object.mu. Concurrent readers of one block
// share one fetch (a fill). A reader whose context is cancelled stops
// waiting; the fill carries on, detached, for the others. Each fill in
// flight, and each read blocked on one, is recorded while it lasts
// (now.go, Cache.Now, which `jitfs status` shows) with who asked
// (WithAsker): an entry added and removed under a lock of its own, taken
// with no other held, and the bytes received counted with an atomic the
// source moves (internal/progress), never per byte. Eviction runs in
// the background between watermarks and never removes an object that is open
// or has fills in flight.
//
// # Errors
//
// A full or failing cache disk never fails an open or a read. An object
// whose files cannot be created is read through fills alone (memOnly); a
// fill whose bytes the disk refuses is kept in memory (Object.mem) and
// served from there, so a reader of a large object on a full disk fetches
// each byte once rather than once per read. What is held is bounded
// (Options.MemoryBytes, least recently read dropped first) and reported
// (Stats.MemoryBytes, MemoryHitBytes); each condition is logged and counted
// (Stats.DiskErrors). The next open of the object tries the disk again.
// Source errors surface to the readers of that fill only.
package cache
