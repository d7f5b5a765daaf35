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
// one size still differ.
package testworld
