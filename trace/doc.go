// Package trace reads and writes jitfs file-access traces.
//
// A trace is what a render did to its files: every lookup, open, read,
// readdir and release that a jitfs mount served (recorded live with
// `jitfs mount --trace`), or every file syscall a process made (imported
// from strace with `jitfs trace import-strace` by package trace/strace).
// Both sources share one format so that the same tools summarise and
// replay either, and a studio can record a trace on any workstation
// without jitfs.
//
// The format is JSON Lines inside a zstd stream: a Header line, then one
// Event per line, then optionally an "end" event with the recorder's
// counters. docs/trace-format.md is the specification for other tools.
//
// Recorder is the live writer. It never blocks the read path: events go
// through a bounded queue to a background encoder, and when the queue is
// full the event is dropped and counted rather than delaying a renderer's
// read. The stream is flushed every second, so a killed daemon leaves a
// trace that is readable up to its last second; Reader reports the torn
// tail as ErrTruncated after returning every whole event. The same holds
// for a copy taken while the trace is being written, cut anywhere after
// its first block; cut before that, it is ErrCutInHeader.
package trace
