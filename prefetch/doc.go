// Package prefetch is the daemon's prefetch engine: it makes files
// resident in the cache before a renderer opens them, on behalf of the
// hook API (Nuke and Blender hooks, render agents, `jitfs prefetch`).
//
// Work is ordered by priority band, highest first: the frame starting now
// (a blocking request), a miss a DCC reports, job-wide dependencies,
// look-ahead frames, the rest of the task's sequence. A read blocked in
// the FUSE layer outranks all of them without queueing here at all: the
// engine's fetches draw on the cache's own prefetch byte budget, never on
// the slots a blocked read or read-ahead takes, and a read that wants a block the
// engine is fetching shares that fetch.
//
// A file wanted twice is fetched once: requests for a path already queued
// or in flight join it (raising its priority if needed), and a resident
// file costs no GCS request. Files a running job prefetched are pinned —
// held open in the cache, which never evicts an open object — until the
// job releases them or ends, up to a fraction of the cache budget, so
// pins can never wedge the cache. Released files are evicted first.
//
// Frame learning (learn.go) predicts a job's next frame from the frames
// it served. Its knowledge can be carried between engines (shared.go: the
// node daemon's --learn-prefix): FrameKnowledge gives a job's frame
// files generalised on the frame number, TeachFrames takes another's,
// and a job with no previous frame of its own then has the files of the
// frame it starts predicted from it and fetched at once.
//
// # Concurrency
//
// Engine.mu guards the queue, the tasks, the jobs and their pins, and the
// learners. The FUSE open path takes it too: after every successful open
// the mount calls Observe (once any job has opened a frame window), and
// the open's reply waits for it. So the engine holds mu only for its own
// bookkeeping and never across a call into the cache that can block:
//
//   - Cache.Open and Cache.Used take the cache's lock, and Cache.Open then
//     the object's; another open of the same object holds the object's
//     lock across disk I/O (reading its journal, opening its files,
//     re-checking a whole cached object's CRC32C after a restart), and
//     Cache.Open waits for it while holding the cache's lock. A worker
//     therefore opens its file, asks the cache's budget and the file's
//     size before it takes mu.
//   - Handle.Close takes the object's lock and may close its files; the
//     worker, Release and Close decide under mu which handles to close
//     and close them after unlocking (still before the task's waiters or
//     Release's caller hear back, so a file not kept is no longer held by
//     then).
//   - Pinning a file for a second job opens nothing: pins of one object
//     generation share one handle (held), closed when the last pin ends.
//   - A status report asks the running fetches how far they are
//     (Handle.Arrived takes the object's lock) after unlocking; the
//     progress of waiting requests is otherwise kept current under mu as
//     files are sized and end, so the report makes no pass over them.
//
// Only Handle.Demote, which sets an atomic flag, is called under mu, and
// a failed fetch is logged after unlocking. Nothing in the cache calls
// back into the engine, and the FUSE open path holds no cache or node
// lock when it calls Observe, so no lock cycle runs through mu; with the
// rule above, a FUSE open never waits behind disk or GCS I/O there either.
package prefetch
