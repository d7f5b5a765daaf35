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
package prefetch
