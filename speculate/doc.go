// Package speculate fetches ahead of renders that send no hooks. It
// follows streams (the reading of one directory through one snapshot:
// every process of a mount or of a job, so a shell loop running one
// `oiiotool` per frame is one stream, not a hundred) and fetches the
// files a stream will open next before it opens them.
//
// # Kinds
//
// Each directory has tracks, each an ordering of its files along which a
// reader is followed:
//
//   - siblings: the directory's listing. A reader moving forward through
//     it by a small stride (files in listing order, every second file)
//     has the next files predicted. A walker that read two directories in
//     listing order has the first files of the next directory in its
//     parent's listing predicted before it gets there.
//   - sequences: one track per frame pattern (a name with its last run of
//     digits as #), over frame numbers, wherever the frames sit in the
//     listing: a plate and its matte read side by side, UDIM tiles with
//     gaps between rows, unpadded frame numbers that sort out of order.
//
// A file ahead of the reader belongs to one track only, and each track's
// window is the next depth files along it whoever predicted them, so two
// kinds over the same files never fetch twice as far ahead.
//
// # Bounds and waste
//
// What a stream has ahead of it is bounded in files (MaxAhead, the depth
// growing from 4 while predictions are opened) and bytes (MaxBytes); what
// all streams together have ahead, by Budget. Files larger than
// MaxFileBytes are left to the cache's own sequential read-ahead. Every
// prediction ends counted as used (opened) or wasted (left far behind,
// dropped with its stream, or never opened by Close), in files and
// bytes; a stream with a run of Misses wasted predictions stops until it
// reads in order again for longer. Fetches go through the caller's
// Fetcher, which in jitfs is the cache's Handle.Speculate: a byte budget
// of its own, so speculation never takes what a hook's prefetch or a
// blocked read needs.
//
// # Co-open learning
//
// With CoOpen, the Speculator also learns which files are opened
// together, for files with no order to follow: a POV-Ray scene and its
// includes, a Blender file, its libraries and their textures, an OCIO
// config and its LUTs. Opens through one Speculator (one mount, or one
// job's view of a source on the node: within a job) fall into sessions: a
// session starts with an open when none is running, its first file is
// the leader, and it ends after a quiet gap (5 s), after a minute, or
// when the leader (or another frame of its sequence) is opened again, as
// a render loop's next frame does. A session ending teaches the leader's
// group what followed it (at most 64 files). When the leader starts a
// session again, the followers seen in most of its sessions (all of them,
// after one) are looked up through the snapshot and fetched before they
// are opened; a file that leads a group of its own starts it in another's
// session too. Files opened in the last two minutes are resident and
// never predicted.
//
// Names are normalised on their frame number (the last run of 2 to 9
// digits in the base name): a group learned on plate.1001.exr leads on
// plate.1002.exr, and a follower that is a frame near the leader's
// (matte.1001.exr) is learned both as itself and relative to the leader's
// frame (matte.1002.exr on frame 1002); the next frames tell which holds.
// A leader with no frame number (a scene opened once per frame) learns
// instead how each sequence among its followers moved from one session
// to the next (pos.0001.inc, then pos.0002.inc) and fetches the next step
// (pos.0003.inc); a file that keeps its number (a UDIM tile) stays a
// plain follower. Frames of the leader's own sequence are left to
// sequence read-ahead.
//
// ExportCoOpen and ImportCoOpen (share.go) carry groups between nodes
// (the node daemon's --learn-prefix): imported groups come after the
// node's own, only for leaders it does not know, and without their
// sequence followers, whose next step is another node's.
//
// Co-open predictions are counted in the same Stats (and in CoOpen):
// predicted once looked up and within the byte bounds (MaxFileBytes a
// file, MaxBytes outstanding for co-open, and the Budget every stream
// shares), used
// when opened, wasted when unopened two minutes later or at Close. A group
// whose predictions are wasted Misses times in a row is forgotten
// (counted in Stopped); one with any waste needs a follower seen twice.
//
// Groups are kept in CoOpenFile (in jitfs, one file per source under the
// cache directory's coopen/), so a restarted daemon and every later job
// of the source start with them: at most 4,096 leaders, the least
// recently led forgotten first, and counts halved every 16 sessions so
// that recent renders outweigh old ones. The file is a CRC-32C-checked
// payload written to a temporary file and renamed over the old, every 30
// s while learning and at Close; Speculators of one file share one set
// of groups. A file that does not check out (cut short, a flipped byte,
// counts learning never makes) is ignored with a log line: the groups
// only drive fetching ahead, so the worst a bad file can do is waste.
//
// # Concurrency
//
// Opened is called on the FUSE open path and never blocks: a directory's
// listing is fetched in a goroutine, and predictions are handed to a
// fixed pool of workers through a bounded queue (a full queue defers
// them to the next open). One mutex guards the streams; it is never held
// across a listing or a fetch. Co-open learning has a mutex of its own
// and its groups another, taken in that order (and the streams' mutex
// after its own, for the Budget), and none is held across a lookup, a
// fetch or a write of the file (which is encoded one group at a time, so
// an open waits for one group at most); its lookups and fetches run on a
// pool of 16 workers.
package speculate
