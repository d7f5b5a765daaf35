// Package layering holds no code, only a test: the rules of which jitfs
// package may import which, checked over `go list -deps` on every test
// run so that a change that breaks a floor fails CI instead of a review.
//
// A Go test was chosen over golangci-lint's depguard: it needs no tool
// beyond the go command, it checks transitive imports (depguard sees only
// direct ones), and the rules read as Go next to the reasons for them.
// That internal/ is imported only from inside the module is the go
// command's own rule and needs no check here.
package layering
