//go:build production

package main

// devCommands: a production build has no demo, emulator or bench (see
// dev.go).
func devCommands() []command { return nil }
