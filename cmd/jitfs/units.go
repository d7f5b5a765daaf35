package main

import "github.com/dustin/go-humanize"

// size is how the command writes a byte count, everywhere: binary units
// with the unit a reader expects at that size ("300 GiB", not "307200
// MiB"), the units --cache-size and the other size flags take (parseSize).
func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
