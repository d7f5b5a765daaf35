package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Format is the value of Header.Format this package writes and accepts.
const Format = "jitfs.trace/v1"

// Op names an operation. Mount traces use lookup, getattr, open, read,
// readdir and release; strace imports also use stat, access, readlink,
// mmap and close. Readers must skip ops they do not know.
type Op string

// The operations.
const (
	OpLookup   Op = "lookup"   // a name resolved in a directory (FUSE LOOKUP)
	OpGetattr  Op = "getattr"  // attributes of a known inode (FUSE GETATTR)
	OpStat     Op = "stat"     // stat/lstat/statx/newfstatat of a path (strace)
	OpAccess   Op = "access"   // access/faccessat (strace)
	OpReadlink Op = "readlink" // readlink (strace)
	OpOpen     Op = "open"     // a file or directory opened
	OpRead     Op = "read"     // Len bytes requested at Off, N returned
	OpMmap     Op = "mmap"     // a mapping of Len bytes at Off (strace)
	OpReaddir  Op = "readdir"  // a directory listed
	OpRelease  Op = "release"  // a FUSE handle released
	OpClose    Op = "close"    // an fd closed (strace)
	OpEnd      Op = "end"      // trailer: the recorder's counters
)

// Header is the first line of a trace.
type Header struct {
	Format string `json:"format"`
	// Source is "mount" for a live recording, "strace" for an import.
	Source string `json:"source"`
	// Start is the wall-clock time of t = 0.
	Start time.Time `json:"start"`
	// Root is the directory the traced data lives under: the mountpoint,
	// or the --prefix of an import. Event paths are absolute; replay maps
	// Root onto its --root.
	Root string `json:"root"`
	// Bucket and Prefix name the GCS data behind a mount trace.
	Bucket string `json:"bucket,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Host   string `json:"host,omitempty"`
	// Cmd is the traced command line (imports) or the daemon's (mounts).
	Cmd []string `json:"cmd,omitempty"`
	// Note is free text: the workload, how it was recorded.
	Note string `json:"note,omitempty"`
}

// Event is one operation.
type Event struct {
	// T is seconds since Header.Start at which the operation began.
	T float64 `json:"t"`
	// Pid is the calling thread's id, as both FUSE and strace -f report
	// it (for a single-threaded process, its pid). Replay runs each Pid's
	// operations in order; different Pids run concurrently when they
	// overlapped in time as recorded, and one after another when they did
	// not (a shell loop's processes).
	Pid int `json:"pid"`
	Op  Op  `json:"op"`
	// Path is the absolute path operated on.
	Path string `json:"path,omitempty"`
	// Fh identifies an open file: the FUSE handle or the process's fd.
	// Reads, mmaps and releases refer to the open with the same Pid and
	// Fh (mount traces: the same Fh in any pid).
	Fh  uint64 `json:"fh,omitempty"`
	Off int64  `json:"off,omitempty"`
	// Len is the number of bytes asked for (read) or mapped (mmap).
	Len int64 `json:"len,omitempty"`
	// N is the number of bytes returned (read) or entries listed (readdir).
	N int64 `json:"n,omitempty"`
	// Size is the file's size when the operation saw it (lookup, getattr,
	// stat, open). Replay and bench use it to rebuild a bucket of the
	// right shape from a trace alone.
	Size int64 `json:"size,omitempty"`
	// Err is the errno name of a failed operation ("ENOENT"), else empty.
	Err string `json:"err,omitempty"`
	// Dur is the operation's latency in seconds.
	Dur float64 `json:"dur,omitempty"`
	// Dir marks a directory: opened or listed, or found by a lookup,
	// getattr or stat.
	Dir bool `json:"dir,omitempty"`
	// Write marks an open for writing (strace imports: O_WRONLY, O_RDWR,
	// O_CREAT or O_TRUNC), which a read-only mount would refuse.
	Write bool `json:"write,omitempty"`
	// Cache is the outcome of a mount read: hit, partial or miss.
	Cache string `json:"cache,omitempty"`
	// Fetched is the bytes of this operation that waited on GCS.
	Fetched int64 `json:"fetched,omitempty"`
	// Events and Dropped are set on the "end" trailer only.
	Events  int64 `json:"events,omitempty"`
	Dropped int64 `json:"dropped,omitempty"`
}

// Under reports whether p is prefix itself or inside it. An empty prefix
// holds every path.
func Under(p, prefix string) bool {
	if prefix == "" || prefix == "/" {
		return true
	}
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// CleanAbs returns the clean absolute form of p, or false when p is not
// absolute or holds a NUL byte.
func CleanAbs(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return "", false
	}
	return path.Clean(p), true
}

// ErrTruncated means the trace ended mid-stream (its writer was killed);
// every whole event before the tear was returned.
var ErrTruncated = errors.New("trace: truncated (writer did not close it)")

// ErrCutInHeader means the trace ends before its header is whole (it was
// copied just after its writer started): there is nothing to use.
var ErrCutInHeader = errors.New("trace: cut short inside its header (copied while being written?): no events to use")

// cutShort reports whether err is the decoder meeting the end of the file
// inside a zstd frame: the file was cut, not corrupted.
func cutShort(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// Limits on what a reader accepts, so a corrupt or hostile file cannot
// make it allocate without bound.
const maxLine = 1 << 20

// Reader decodes a trace. It accepts plain JSON Lines as well as the zstd
// framing, so a hand-edited trace needs no recompression.
type Reader struct {
	h    Header
	sc   *bufio.Scanner
	zr   *zstd.Decoder
	line int
	// End is the trailer, once Next has reached it.
	End *Event
}

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// NewReader reads the header and returns a reader positioned at the first
// event.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	rd := &Reader{}
	var src io.Reader = br
	magic, _ := br.Peek(4)
	if len(magic) > 0 && len(magic) < len(zstdMagic) && bytes.HasPrefix(zstdMagic, magic) {
		return nil, ErrCutInHeader // cut inside the zstd magic itself
	}
	if bytes.Equal(magic, zstdMagic) {
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		rd.zr = zr
		src = zr
	}
	rd.sc = bufio.NewScanner(src)
	rd.sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	if !rd.sc.Scan() {
		rd.Close()
		if err := rd.sc.Err(); cutShort(err) {
			return nil, ErrCutInHeader
		} else if err != nil {
			return nil, fmt.Errorf("trace: reading header: %w", err)
		}
		return nil, errors.New("trace: empty file (no header)")
	}
	rd.line = 1
	if err := json.Unmarshal(rd.sc.Bytes(), &rd.h); err != nil {
		// A header torn by the end of the file (a plain JSON Lines trace
		// copied while being written) is a cut, not a malformed header.
		var se *json.SyntaxError
		torn := errors.As(err, &se) && se.Offset == int64(len(rd.sc.Bytes()))
		more := rd.sc.Scan()
		rd.Close()
		if torn && !more && (rd.sc.Err() == nil || cutShort(rd.sc.Err())) {
			return nil, ErrCutInHeader
		}
		return nil, fmt.Errorf("trace: header is not JSON: %w", err)
	}
	if rd.h.Format != Format {
		rd.Close()
		return nil, fmt.Errorf("trace: unsupported format %q (want %q)", rd.h.Format, Format)
	}
	return rd, nil
}

// Header returns the trace's header.
func (r *Reader) Header() Header { return r.h }

// Next returns the next event, io.EOF at a clean end, ErrTruncated at a
// torn end, or an error naming the bad line.
func (r *Reader) Next() (Event, error) {
	for r.sc.Scan() {
		r.line++
		b := r.sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			// A torn last line is what a killed writer leaves; only call
			// it truncation if nothing follows it.
			// A zstd stream cut inside a block leaves the blocks before
			// it decoded, usually ending mid-line, and then reports the
			// cut: that is truncation too.
			if !r.sc.Scan() && (r.sc.Err() == nil || cutShort(r.sc.Err())) {
				return Event{}, ErrTruncated
			}
			return Event{}, fmt.Errorf("trace: line %d: %w", r.line, err)
		}
		if ev.Op == "" {
			return Event{}, fmt.Errorf("trace: line %d: event has no op", r.line)
		}
		if ev.Op == OpEnd {
			e := ev
			r.End = &e
		}
		return ev, nil
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Event{}, fmt.Errorf("trace: line %d longer than %d bytes", r.line+1, maxLine)
		}
		if cutShort(err) {
			return Event{}, ErrTruncated
		}
		return Event{}, fmt.Errorf("trace: %w", err)
	}
	return Event{}, io.EOF
}

// Close releases the decoder.
func (r *Reader) Close() {
	if r.zr != nil {
		r.zr.Close()
		r.zr = nil
	}
}

// ReadAll reads a whole trace. A truncated trace returns its events and
// ErrTruncated.
func ReadAll(rd io.Reader) (Header, []Event, error) {
	r, err := NewReader(rd)
	if err != nil {
		return Header{}, nil, err
	}
	defer r.Close()
	var evs []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return r.h, evs, nil
		}
		if err != nil {
			return r.h, evs, err
		}
		evs = append(evs, ev)
	}
}

// Write writes a whole trace (header, events) in the zstd framing. It is
// what importers use; live recording uses Recorder.
func Write(w io.Writer, h Header, evs []Event) error {
	if h.Format == "" {
		h.Format = Format
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(zw)
	if err := enc.Encode(h); err != nil {
		zw.Close()
		return err
	}
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			zw.Close()
			return err
		}
	}
	return zw.Close()
}
