package learnshare

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/jitfs/jitfs/prefetch"
)

// Version is the format's version, in the header and the path (v1/).
const Version = 1

// Bounds of one object.
const (
	// MaxObjectBytes bounds an object as stored: a larger one is not
	// published, and not read.
	MaxObjectBytes = 1 << 20
	// MaxJSONBytes bounds the JSON an object decompresses to.
	MaxJSONBytes = 16 << 20
	// MaxCoOpenGroups bounds the co-open groups one object carries (the
	// most recently led first).
	MaxCoOpenGroups = 512
)

const (
	magic   = "JITFSLRN"
	headLen = len(magic) + 16
)

// Sentinel errors of Decode.
var (
	ErrMalformed = errors.New("learnshare: malformed object")
	ErrVersion   = errors.New("learnshare: unknown format version")
)

// Record is what one node learned of one job's reading of one source.
type Record struct {
	// Job and Source name what it is about (Source as gs://BUCKET/PREFIX/);
	// a reader checks them against the path it read it from.
	Job    string `json:"job"`
	Source string `json:"source"`
	// Node is the publishing node's id; Written, when (Unix seconds).
	Node    string `json:"node"`
	Written int64  `json:"written"`
	// Frames are the files of a frame, generalised on the frame number
	// (prefetch.FrameFile).
	Frames []prefetch.FrameFile `json:"frames,omitempty"`
	// CoOpen are the source's co-open groups, as speculate exports them.
	CoOpen json.RawMessage `json:"coopen,omitempty"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode is r as an object, or an error when it is larger than
// MaxObjectBytes.
func Encode(r Record) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("learnshare: encode: %w", err)
	}
	if len(js) > MaxJSONBytes {
		return nil, fmt.Errorf("learnshare: encode: %d bytes of JSON, at most %d", len(js), MaxJSONBytes)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("learnshare: encode: %w", err)
	}
	payload := enc.EncodeAll(js, nil)
	enc.Close()
	out := make([]byte, headLen, headLen+len(payload))
	copy(out, magic)
	binary.BigEndian.PutUint32(out[8:], Version)
	binary.BigEndian.PutUint32(out[12:], crc32.Checksum(payload, castagnoli))
	binary.BigEndian.PutUint32(out[16:], uint32(len(payload)))
	binary.BigEndian.PutUint32(out[20:], uint32(len(js)))
	out = append(out, payload...)
	if len(out) > MaxObjectBytes {
		return nil, fmt.Errorf("learnshare: encode: %d bytes, at most %d", len(out), MaxObjectBytes)
	}
	return out, nil
}

// Decode reads an object and checks it is about job and source. Its
// co-open groups are checked by the importer (speculate.ImportCoOpen).
func Decode(b []byte, job, source string) (Record, error) {
	var r Record
	if len(b) > MaxObjectBytes {
		return r, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxObjectBytes)
	}
	if len(b) < headLen || string(b[:len(magic)]) != magic {
		return r, fmt.Errorf("%w: not a learnshare object", ErrMalformed)
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != Version {
		return r, fmt.Errorf("%w: version %d, this jitfs reads %d", ErrVersion, v, Version)
	}
	sum, n, jn := binary.BigEndian.Uint32(b[12:]), binary.BigEndian.Uint32(b[16:]), binary.BigEndian.Uint32(b[20:])
	payload := b[headLen:]
	if uint64(n) != uint64(len(payload)) {
		return r, fmt.Errorf("%w: %d bytes of payload, header says %d", ErrMalformed, len(payload), n)
	}
	if crc32.Checksum(payload, castagnoli) != sum {
		return r, fmt.Errorf("%w: checksum mismatch", ErrMalformed)
	}
	if jn > MaxJSONBytes {
		return r, fmt.Errorf("%w: %d bytes of JSON, at most %d", ErrMalformed, jn, MaxJSONBytes)
	}
	dec, err := zstd.NewReader(bytes.NewReader(payload), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxJSONBytes))
	if err != nil {
		return r, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	defer dec.Close()
	js, err := io.ReadAll(io.LimitReader(dec, int64(jn)+1))
	if err != nil {
		return r, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(js) != int(jn) {
		return r, fmt.Errorf("%w: %d bytes of JSON, header says %d", ErrMalformed, len(js), jn)
	}
	// Fields this version does not know are skipped: adding one needs no
	// new version.
	if err := json.Unmarshal(js, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case r.Job != job:
		return Record{}, fmt.Errorf("%w: about job %q, not %q", ErrMalformed, r.Job, job)
	case r.Source != source:
		return Record{}, fmt.Errorf("%w: about source %q, not %q", ErrMalformed, r.Source, source)
	}
	if err := prefetch.ValidateFrameFiles(r.Frames); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return r, nil
}
