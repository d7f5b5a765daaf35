// Package strace imports the output of strace as a jitfs trace, so that a
// studio can record what a render does to its files on any workstation,
// without a jitfs mount, and summarise or replay it with the same tools.
//
// Import works in three layers, one file each:
//
//   - tokenize.go reads strace's text: it splits each line into pid,
//     timestamp, call name, arguments and result, joins a call's
//     "<unfinished ...>" and "<... resumed>" halves, and learns from the
//     clone calls which process created which. Nothing here knows what a
//     call means.
//   - process.go models the processes the calls ran in: their fd tables,
//     the open file descriptions dup'd fds and forked children share (and
//     so the offsets that plain read() uses), and their working
//     directories. It turns fd and path arguments into absolute paths.
//   - syscalls.go holds one handler per traced system call, which updates
//     that model and emits the trace.Event the call stands for.
//
// strace.go ties them together: the first pass tokenizes the whole input,
// because a child's first line often comes before the clone that created
// it returns; the second applies the calls in the order they finished.
//
// The package depends on package trace for the event format; package
// trace does not depend on it.
package strace
