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
// # Concurrency
//
// Opened is called on the FUSE open path and never blocks: a directory's
// listing is fetched in a goroutine, and predictions are handed to a
// fixed pool of workers through a bounded queue (a full queue defers
// them to the next open). One mutex guards the streams; it is never held
// across a listing or a fetch.
package speculate
