//go:build production

package main

// devCommands: a production build has no demo, emulator or bench (see
// dev.go).
func devCommands() []command { return nil }

// leftOut are the commands a production build leaves out, so asking for
// one says so rather than suggesting a near name.
var leftOut = []string{"demo", "emulator", "bench"}
