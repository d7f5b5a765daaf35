// Package testworld is the remote side of jitfs's tests and benchmarks in
// one call: an in-process GCS emulator, a fault proxy in front of it that
// counts requests and injects faults, and a gcs.Client pointed at the proxy,
// all torn down by the test's Cleanup.
//
// Tests reach the emulator through cloud.google.com/go/storage, as
// production reaches GCS, so a request the cache makes is a request the
// proxy counts: assert on World.Proxy's counters (media requests and bytes),
// never on elapsed time.
//
// # Content
//
// RandBytes and World.PutRandom make deterministic pseudo-random content
// from a seed string, so a failing comparison reproduces and two objects of
// one size still differ: the seed is hashed whole, so two names of one
// length (frame.0001, frame.0002) get different bytes and a test cannot
// pass on swapped files.
//
// # Daemons
//
// A package whose tests serve a mount from another process calls Main from
// its TestMain; StartDaemon then re-executes the test binary as the daemon
// (and Command as any other child), waits for its FUSE mount to answer, and
// stops it at cleanup, failing the test if it exits non-zero or leaves a
// mount behind. Kill and Start play a crash and a restart. No test builds
// the jitfs binary with the Go toolchain.
package testworld
