// Package speculate fetches ahead of renders that send no hooks. It
// follows streams (the reading of one directory through one snapshot:
// every process of a mount or of a job, so a shell loop running one
// `oiiotool` per frame is one stream, not a hundred) and, when a stream
// moves forward through its directory's listing by a small stride (files
// in listing order, every frame of an image sequence, every second frame,
// UDIM tiles), fetches the next files before they are opened.
//
// # Bounds and waste
//
// What a stream has ahead of it is bounded in files (MaxAhead, the depth
// growing from 2 while predictions are opened) and bytes (MaxBytes);
// files larger than MaxFileBytes are left to the cache's own sequential
// read-ahead. Every prediction ends counted as used (opened) or wasted
// (left far behind, dropped with its stream, or never opened by Close);
// a stream with a run of Misses wasted predictions stops until it reads
// in order again for longer. Fetches go through the caller's Fetcher,
// which in jitfs draws on the cache's prefetch budget: speculation never
// takes a slot a blocked read needs.
//
// # Concurrency
//
// Opened is called on the FUSE open path and never blocks: a directory's
// listing is fetched in a goroutine, and predictions are handed to a
// fixed pool of workers through a bounded queue (a full queue defers
// them to the next open). One mutex guards the streams; it is never held
// across a listing or a fetch.
package speculate
