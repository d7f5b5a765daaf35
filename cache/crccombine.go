package cache

// CRC32C of a concatenation from the CRC32Cs of its parts (zlib's
// crc32_combine, for the Castagnoli polynomial): an object assembled from
// ranges fetched in any order is checked against GCS's whole-object
// CRC32C from the ranges' own checksums, taken as the bytes arrived,
// without reading the object back from the cache disk.

// castagnoliReversed is the Castagnoli polynomial, bit-reversed, as
// hash/crc32 uses it.
const castagnoliReversed = 0x82f63b78

// x2nTable[k] is x^(2^k) modulo the polynomial.
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for n := 1; n < 32; n++ {
		p = multModP(p, p)
		t[n] = p
	}
	return t
}()

// multModP multiplies a and b modulo the polynomial (reflected bit order).
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReversed
		} else {
			b >>= 1
		}
	}
	return p
}

// x2nModP is x^(n * 2^k) modulo the polynomial.
func x2nModP(n int64, k uint) uint32 {
	p := uint32(1) << 31 // x^0
	for n != 0 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		n >>= 1
		k++
	}
	return p
}

// crc32cCombine is the CRC32C of A followed by B, given crcA, crcB and
// B's length.
func crc32cCombine(crcA, crcB uint32, lenB int64) uint32 {
	return multModP(x2nModP(lenB, 3), crcA) ^ crcB
}

// assembledCRC combines the CRC32Cs of ranges that tile [0,size) exactly
// (sorted by start); ok is false when they do not (a gap, an overlap: a
// range fetched again, or ranges restored from a journal), and the object
// must be read back to be checked.
func assembledCRC(ranges []span, size int64) (crc uint32, ok bool) {
	var at int64
	for i, r := range ranges {
		if r.start != at || r.end <= r.start {
			return 0, false
		}
		if i == 0 {
			crc = r.crc
		} else {
			crc = crc32cCombine(crc, r.crc, r.end-r.start)
		}
		at = r.end
	}
	return crc, at == size && len(ranges) > 0
}
