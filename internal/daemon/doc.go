// Package daemon wires a running jitfs daemon, once, for the jitfs
// command, the bench and the tests that mount in process.
//
// A scene mount (StartScene) is a GCS client, the local cache, the jitfs
// filesystem, its FUSE server, and, unless its socket is "none", the
// prefetch engine and the hook API that feeds it, with the mount's
// telemetry snapshot registered for collection. An output area
// (StartOutput) is a GCS client, the staging area that uploads closed
// files, its filesystem and FUSE server, and the hook API for flush and
// status.
//
// Both check what can be checked before mounting (the mountpoint, the
// bucket, the trace path), so a bad start is one error and nothing left
// behind, and both Close in the one safe order: the hook API and the
// engine first (they resolve paths through the mount), then the mount
// (detached if files are still open, so the daemon can exit), then what
// the mount used (trace, cache or staging area, client).
//
// Flags, signals, exit codes and the lines printed for users stay in
// cmd/jitfs: this package logs through the configured logger and returns
// errors.
package daemon
