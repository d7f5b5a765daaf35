// Package scene embeds the repository's sample show, the one `jitfs demo`
// and `jitfs emulator` (without --data) serve from the in-process GCS
// emulator. The demo serves it beside generated shots standing in for the
// rest of a show (bench.Filler, `jitfs demo --show-size`): a real show is
// hundreds of GB, and a pre-sync copies all of it.
//
// The show's files live in this package's scene directory, not under a
// testdata directory: go:embed reaches only files at or below the
// embedding package, and the go tool skips testdata directories when it
// looks for packages, so the data sits beside the code that embeds it.
// `go generate ./internal/scene` rewrites them deterministically.
package scene
