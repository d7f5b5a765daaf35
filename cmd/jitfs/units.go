package main

import (
	"time"

	"github.com/dustin/go-humanize"
)

// size is how the command writes a byte count, everywhere: binary units
// with the unit a reader expects at that size ("300 GiB", not "307200
// MiB"), the units --cache-size and the other size flags take (parseSize).
func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// dur is how the command writes a duration, everywhere: Go's form, the one
// its duration flags take (--wait 5m), rounded to what a person reads at
// that length: 412ms, 1.8s, 3m20s, 2h5m0s.
func dur(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
