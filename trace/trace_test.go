package trace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func sampleEvents() []Event {
	return []Event{
		{T: 0.001, Pid: 7, Op: OpLookup, Path: "/show/tex", Dur: 0.0001},
		{T: 0.002, Pid: 7, Op: OpLookup, Path: "/show/nope.exr", Err: "ENOENT"},
		{T: 0.003, Pid: 7, Op: OpOpen, Path: "/show/tex/a.exr", Fh: 3},
		{T: 0.004, Pid: 7, Op: OpRead, Path: "/show/tex/a.exr", Fh: 3, Off: 4096, Len: 131072, N: 131072, Cache: "miss", Fetched: 131072, Dur: 0.02},
		{T: 0.005, Pid: 8, Op: OpReaddir, Path: "/show/tex", N: 12},
		{T: 0.006, Pid: 7, Op: OpRelease, Path: "/show/tex/a.exr", Fh: 3},
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	h := Header{Source: "strace", Root: "/show", Start: time.Unix(1700000000, 0).UTC(), Cmd: []string{"blender", "-b"}}
	if err := Write(&buf, h, sampleEvents()); err != nil {
		t.Fatal(err)
	}
	gh, evs, err := ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	h.Format = Format
	if !reflect.DeepEqual(gh, h) {
		t.Errorf("header = %+v, want %+v", gh, h)
	}
	if !reflect.DeepEqual(evs, sampleEvents()) {
		t.Errorf("events differ:\n got %+v\nwant %+v", evs, sampleEvents())
	}
}

func TestPlainJSONLines(t *testing.T) {
	in := `{"format":"jitfs.trace/v1","source":"strace","start":"2024-01-01T00:00:00Z","root":"/s"}
{"t":1,"pid":2,"op":"open","path":"/s/a"}

{"t":2,"pid":2,"op":"future-op","path":"/s/a"}
`
	_, evs, err := ReadAll(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Op != OpOpen || evs[1].Op != "future-op" {
		t.Fatalf("events = %+v", evs)
	}
}

func TestReaderErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":      "",
		"not json":   "hello\n",
		"bad format": `{"format":"other/v9"}` + "\n",
	} {
		if _, _, err := ReadAll(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A bad line in the middle is an error naming the line, not a tear.
	in := `{"format":"jitfs.trace/v1"}` + "\n" + `{"t":1,"op":"open"}` + "\nxx\n" + `{"t":1,"op":"open"}` + "\n"
	_, evs, err := ReadAll(strings.NewReader(in))
	if err == nil || errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
	if len(evs) != 1 {
		t.Fatalf("events before the bad line = %d", len(evs))
	}
}

func TestRecorderCloseWritesTrailer(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "t.jsonl.zst"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := NewRecorder(f, Header{Source: "mount", Root: "/mnt"}, RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range sampleEvents() {
		rec.Record(ev)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	rec.Record(Event{Op: OpOpen}) // after Close: dropped, no panic
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	h, evs, err := ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h.Source != "mount" || h.Root != "/mnt" || h.Start.IsZero() {
		t.Errorf("header = %+v", h)
	}
	n := len(sampleEvents())
	if len(evs) != n+1 || evs[n].Op != OpEnd || evs[n].Events != int64(n) || evs[n].Dropped != 0 {
		t.Fatalf("events = %+v", evs)
	}
}

// blockingWriter stalls every write until released, standing in for a
// disk that cannot keep up.
type blockingWriter struct {
	stalled atomic.Bool
	release chan struct{}
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.stalled.Load() {
		<-w.release
	}
	return w.buf.Write(p)
}
func (w *blockingWriter) Close() error { return nil }

func TestRecorderDropsInsteadOfBlocking(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	rec, err := NewRecorder(w, Header{}, RecorderOptions{Queue: 8, FlushEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.stalled.Store(true)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10000; i++ {
			rec.Record(Event{Op: OpRead, Off: int64(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Record blocked on a stalled writer")
	}
	// The encoder buffers 64 KiB before it must write, so a few hundred
	// events get through before the stall bites; the rest must drop.
	if rec.Dropped() < 9000 {
		t.Errorf("dropped = %d, want nearly all of 10000", rec.Dropped())
	}
	close(w.release)
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := ReadAll(&w.buf)
	if err != nil {
		t.Fatal(err)
	}
	end := evs[len(evs)-1]
	if end.Op != OpEnd || end.Dropped < 9000 || end.Events+end.Dropped != 10000 {
		t.Fatalf("trailer = %+v (events in file %d)", end, len(evs)-1)
	}
}

func TestTruncatedTraceKeepsWholeEvents(t *testing.T) {
	var buf bytes.Buffer
	rec, err := NewRecorder(nopCloser{&buf}, Header{Root: "/m"}, RecorderOptions{FlushEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range sampleEvents() {
		rec.Record(ev)
	}
	rec.Close()
	full := buf.Bytes()
	// Cut the stream inside its last frame, as a SIGKILL would.
	for cut := len(full) - 1; cut > len(full)-8; cut-- {
		_, evs, err := ReadAll(bytes.NewReader(full[:cut]))
		if err == nil || len(evs) > len(sampleEvents())+1 {
			t.Fatalf("cut at %d: err %v, %d events", cut, err, len(evs))
		}
	}
}

func TestUnder(t *testing.T) {
	for _, c := range []struct {
		p, prefix string
		want      bool
	}{
		{"/show/a", "/show", true}, {"/show", "/show/", true}, {"/showx/a", "/show", false},
		{"/a", "", true}, {"/a", "/", true}, {"/", "/show", false},
	} {
		if got := Under(c.p, c.prefix); got != c.want {
			t.Errorf("Under(%q, %q) = %v", c.p, c.prefix, got)
		}
	}
}
