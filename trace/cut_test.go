package trace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestReadCutTrace cuts a real trace at byte offsets a copy taken while it
// is being written can end at: inside the header's frame, inside later
// zstd blocks, one byte short of the end. A cut before any event can be
// decoded is ErrCutInHeader with nothing returned; any later cut returns
// the events whole before it, in order, and ErrTruncated.
func TestReadCutTrace(t *testing.T) {
	b, err := os.ReadFile("../testdata/traces/blender_sh010_f01-04.jsonl.zst")
	if err != nil {
		t.Fatal(err)
	}
	wantH, all, err := ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, 4, 60, 500} {
		if h, evs, err := ReadAll(bytes.NewReader(b[:n])); !errors.Is(err, ErrCutInHeader) || len(evs) != 0 || h.Format != "" {
			t.Errorf("cut at byte %d: %d events, header %q, err %v; want ErrCutInHeader and nothing", n, len(evs), h.Format, err)
		}
	}
	prev := 0
	for _, n := range []int{len(b) / 3, len(b) / 2, 2 * len(b) / 3, len(b) - 1} {
		h, evs, err := ReadAll(bytes.NewReader(b[:n]))
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at byte %d of %d: err %v, want ErrTruncated", n, len(b), err)
		}
		if !reflect.DeepEqual(h, wantH) {
			t.Errorf("cut at byte %d: header %+v", n, h)
		}
		if len(evs) == 0 || len(evs) >= len(all) || !reflect.DeepEqual(evs, all[:len(evs)]) {
			t.Fatalf("cut at byte %d: %d events, not a proper prefix of the %d whole ones", n, len(evs), len(all))
		}
		if len(evs) < prev {
			t.Errorf("cut at byte %d: %d events, fewer than the earlier cut's %d", n, len(evs), prev)
		}
		prev = len(evs)
	}
}

// TestReadCutAtFrameBoundary: a trace of two zstd frames cut exactly
// between them reads as the first frame's events; cut inside the second
// frame's header, as those events and ErrTruncated.
func TestReadCutAtFrameBoundary(t *testing.T) {
	var buf bytes.Buffer
	first := sampleEvents()
	if err := Write(&buf, Header{Source: "strace", Root: "/show"}, first); err != nil {
		t.Fatal(err)
	}
	boundary := buf.Len()
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(zw, `{"t":1,"pid":9,"op":"open","path":"/show/late.exr"}`+"\n")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if _, evs, err := ReadAll(bytes.NewReader(b)); err != nil || len(evs) != len(first)+1 {
		t.Fatalf("whole: %d events, err %v", len(evs), err)
	}
	if _, evs, err := ReadAll(bytes.NewReader(b[:boundary])); err != nil || !reflect.DeepEqual(evs, first) {
		t.Fatalf("cut at the frame boundary: %d events, err %v", len(evs), err)
	}
	if _, evs, err := ReadAll(bytes.NewReader(b[:boundary+3])); !errors.Is(err, ErrTruncated) || !reflect.DeepEqual(evs, first) {
		t.Fatalf("cut inside the second frame's header: %d events, err %v", len(evs), err)
	}
}

// TestReadCutPlainHeader: a plain JSON Lines trace cut inside its header
// is a cut, while a whole line that is not JSON stays a format error.
func TestReadCutPlainHeader(t *testing.T) {
	if _, _, err := ReadAll(strings.NewReader(`{"format":"jitfs.trace/v1","sou`)); !errors.Is(err, ErrCutInHeader) {
		t.Errorf("torn plain header: %v", err)
	}
	if _, _, err := ReadAll(strings.NewReader("hello\n")); err == nil || errors.Is(err, ErrCutInHeader) {
		t.Errorf("non-JSON header: %v", err)
	}
}
