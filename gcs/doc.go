// Package gcs is jitfs's adapter over cloud.google.com/go/storage: object
// stat, delimiter listing and ranged reads pinned to a generation, and for
// output areas uploads (CRC32C sent so GCS verifies the bytes, generation
// preconditions, ErrPrecondition) and generation-exact deletes.
//
// Production reaches Google Cloud Storage with Application Default
// Credentials. The standard STORAGE_EMULATOR_HOST variable, or an explicit
// endpoint, points the same code path at an emulator, anonymously; tests and
// `jitfs demo` use that with github.com/fsouza/fake-gcs-server.
//
// # Errors
//
// The adapter owns the question "is this retryable": it retries transient
// failures (5xx, 429, timeouts, connection resets, truncated bodies) with
// capped exponential backoff and returns errors that callers test with
// errors.Is against ErrNotFound and ErrBucketNotFound, or with IsPermanent.
// Nothing above this package matches on error strings.
//
// # Concurrency
//
// A Client is safe for concurrent use. ReadRange never returns partial
// results: it fills the whole buffer or returns an error.
package gcs
