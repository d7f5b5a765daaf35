// Package progress carries a byte counter through a context, so that a
// fetch's bytes received so far can be seen by whoever started it (the
// cache's record of fetches in flight, `jitfs status`) without the layer
// that moves the bytes (package gcs) knowing who is watching.
//
// # Concurrency
//
// The counter is an atomic.Int64: a reader adds once per Read call, never
// per byte and never under a lock, so counting costs a transfer nothing it
// would notice. Without a counter in the context every function is a no-op.
package progress
