package cache

import (
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
)

// The combined CRC of ranges cut at random points equals the CRC of the
// whole; ranges that do not tile the object are refused.
func TestAssembledCRC(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		size := 1 + rng.Int64N(1<<16)
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		cuts := []int64{0, size}
		for range rng.IntN(8) {
			cuts = append(cuts, rng.Int64N(size))
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		var ranges []span
		for i := 0; i+1 < len(cuts); i++ {
			ranges = append(ranges, span{cuts[i], cuts[i+1], crc32.Checksum(data[cuts[i]:cuts[i+1]], castagnoli)})
		}
		got, ok := assembledCRC(ranges, size)
		if want := crc32.Checksum(data, castagnoli); !ok || got != want {
			t.Fatalf("size %d cut at %v: combined %08x (ok %v), whole %08x", size, cuts, got, ok, want)
		}
		if len(ranges) > 1 {
			if _, ok := assembledCRC(ranges[1:], size); ok {
				t.Fatal("ranges with a gap at the start were taken as the whole object")
			}
			if _, ok := assembledCRC(append(slices.Clone(ranges), ranges[len(ranges)-1]), size); ok {
				t.Fatal("overlapping ranges were taken as the whole object")
			}
		}
	}
	if _, ok := assembledCRC(nil, 10); ok {
		t.Fatal("no ranges taken as an object")
	}
}
