// Package emulator runs an in-process GCS API server
// (github.com/fsouza/fake-gcs-server) for `jitfs demo`, `jitfs emulator`,
// tests and benchmarks. Clients reach it through cloud.google.com/go/storage
// exactly as production reaches GCS, with the endpoint pointed at it.
//
// Objects are seeded from a directory tree DIR/BUCKET/OBJECT..., or from an
// fs.FS holding one bucket's objects (the embedded sample scene).
package emulator
