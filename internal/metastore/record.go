package metastore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/namespace"
)

// recordVersion is the first byte of every record. A record of another
// version is treated like a corrupt one: absent, listed again.
const recordVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Domains of the key a record's CRC covers, so that a job record and a
// listing record can never pass for each other.
const (
	domainJob     = 'J'
	domainListing = 'L'
)

var errCorrupt = errors.New("corrupt record")

// recordCRC is the CRC32C of the record's identity (domain, the job, the
// key) followed by its version and payload. Covering the identity means a
// record that turns up under another key or another job's bucket (a
// damaged leaf page, an older tree reached through a damaged meta page)
// fails its check instead of serving another directory's generations.
func recordCRC(domain byte, job, key string, body []byte) uint32 {
	var head [1]byte
	head[0] = domain
	c := crc32.Update(0, castagnoli, head[:])
	c = crc32.Update(c, castagnoli, []byte(job))
	c = crc32.Update(c, castagnoli, []byte{0})
	c = crc32.Update(c, castagnoli, []byte(key))
	return crc32.Update(c, castagnoli, body)
}

// seal appends the CRC to a record (version byte and payload).
func seal(domain byte, job, key string, rec []byte) []byte {
	return binary.LittleEndian.AppendUint32(rec, recordCRC(domain, job, key, rec))
}

// unseal checks a record and returns its payload.
func unseal(domain byte, job, key string, v []byte) ([]byte, error) {
	if len(v) < 5 {
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, len(v))
	}
	body, sum := v[:len(v)-4], binary.LittleEndian.Uint32(v[len(v)-4:])
	if recordCRC(domain, job, key, body) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	if body[0] != recordVersion {
		return nil, fmt.Errorf("%w: record version %d, want %d", errCorrupt, body[0], recordVersion)
	}
	return body[1:], nil
}

// The payloads are a plain varint encoding: a listing of 1,000 files
// decodes in tens of microseconds with a handful of allocations (all names
// share one string), where gob or JSON cost ten times that. File names are
// front-coded against the previous name (they share the directory's
// prefix), which halves a typical listing; compression would save little
// more and cost a decode per lookup of a cold directory.

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

const (
	flagCRC32C   = 1 << 0
	flagMetadata = 1 << 1 // Metadata is non-nil (possibly empty)
	// flagRawCRC: a CRC32C value without HasCRC32C (not expected from gcs,
	// kept so that a round trip is exact).
	flagRawCRC = 1 << 2
)

func encodeListing(job, key string, l namespace.Listing) []byte {
	b := make([]byte, 0, 64+16*len(l.Dirs)+48*len(l.Files))
	b = append(b, recordVersion)
	b = appendTime(b, l.ListedAt)
	b = binary.AppendUvarint(b, uint64(len(l.Dirs)))
	for _, d := range l.Dirs {
		b = appendString(b, d)
	}
	b = binary.AppendUvarint(b, uint64(len(l.Files)))
	prev := ""
	for i := range l.Files {
		a := &l.Files[i]
		shared := 0
		for shared < len(prev) && shared < len(a.Name) && prev[shared] == a.Name[shared] {
			shared++
		}
		b = binary.AppendUvarint(b, uint64(shared))
		b = appendString(b, a.Name[shared:])
		prev = a.Name
		b = binary.AppendVarint(b, a.Size)
		b = binary.AppendVarint(b, a.Generation)
		b = appendTime(b, a.Updated)
		var flags byte
		if a.HasCRC32C {
			flags |= flagCRC32C
		}
		if a.Metadata != nil {
			flags |= flagMetadata
		}
		if !a.HasCRC32C && a.CRC32C != 0 {
			flags |= flagRawCRC
		}
		b = append(b, flags)
		if flags&(flagCRC32C|flagRawCRC) != 0 {
			b = binary.LittleEndian.AppendUint32(b, a.CRC32C)
		}
		if a.Metadata != nil {
			b = binary.AppendUvarint(b, uint64(len(a.Metadata)))
			for k, v := range a.Metadata {
				b = appendString(b, k)
				b = appendString(b, v)
			}
		}
	}
	return seal(domainListing, job, key, b)
}

// decoder reads a payload; the first malformed field sets err and every
// later read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items each taking at least one byte, so a bad
// count cannot ask for a huge allocation.
func (d *decoder) count(what string) int {
	v := d.uvarint(what)
	if v > uint64(len(d.b)) {
		d.fail(what)
		return 0
	}
	return int(v)
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(what string) string {
	return string(d.bytes(d.uvarint(what), what))
}

func (d *decoder) byte1(what string) byte {
	if len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint32(what string) uint32 {
	b := d.bytes(4, what)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *decoder) time(what string) time.Time {
	sec := d.varint(what)
	nsec := d.uvarint(what)
	if nsec >= 1e9 {
		d.fail(what)
		return time.Time{}
	}
	// UTC, so that the zero time comes back as time.Time{} exactly.
	return time.Unix(sec, int64(nsec)).UTC()
}

func decodeListing(job, key string, v []byte) (namespace.Listing, error) {
	p, err := unseal(domainListing, job, key, v)
	if err != nil {
		return namespace.Listing{}, err
	}
	d := &decoder{b: p}
	var l namespace.Listing
	l.ListedAt = d.time("listed-at")

	// All names of the listing share one string: one allocation, not one
	// per name.
	nd := d.count("dir count")
	// Front-coded names expand: twice the payload is a fair first guess.
	names := make([]byte, 0, 2*len(p))
	ends := make([]int, 0, nd+8)
	for range nd {
		names = append(names, d.bytes(d.uvarint("dir"), "dir")...)
		ends = append(ends, len(names))
	}
	nf := d.count("file count")
	if d.err == nil && nf > 0 {
		l.Files = make([]gcs.Attrs, nf)
		ends = slices.Grow(ends, nf)
	}
	prevStart := 0
	for i := 0; i < nf && d.err == nil; i++ {
		a := &l.Files[i]
		shared := d.uvarint("name")
		start := len(names)
		if shared > uint64(start-prevStart) {
			d.fail("name prefix")
			break
		}
		names = append(names, names[prevStart:prevStart+int(shared)]...)
		names = append(names, d.bytes(d.uvarint("name"), "name")...)
		prevStart = start
		ends = append(ends, len(names))
		a.Size = d.varint("size")
		a.Generation = d.varint("generation")
		a.Updated = d.time("updated")
		flags := d.byte1("flags")
		a.HasCRC32C = flags&flagCRC32C != 0
		if flags&(flagCRC32C|flagRawCRC) != 0 {
			a.CRC32C = d.uint32("crc32c")
		}
		if flags&flagMetadata != 0 {
			n := d.count("metadata")
			a.Metadata = make(map[string]string, n)
			for range n {
				k := d.str("metadata key")
				a.Metadata[k] = d.str("metadata value")
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return namespace.Listing{}, d.err
	}
	all := string(names)
	start := 0
	if nd > 0 {
		l.Dirs = make([]string, nd)
	}
	for i, end := range ends {
		if i < nd {
			l.Dirs[i] = all[start:end]
		} else {
			l.Files[i-nd].Name = all[start:end]
		}
		start = end
	}
	return l, nil
}

func encodeJob(j Job) []byte {
	b := make([]byte, 0, 32)
	b = append(b, recordVersion)
	b = appendTime(b, j.Started)
	b = appendTime(b, j.Detached)
	return seal(domainJob, j.ID, "", b)
}

func decodeJob(id string, v []byte) (Job, error) {
	p, err := unseal(domainJob, id, "", v)
	if err != nil {
		return Job{}, err
	}
	d := &decoder{b: p}
	j := Job{ID: id, Started: d.time("started"), Detached: d.time("detached")}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return j, d.err
}
