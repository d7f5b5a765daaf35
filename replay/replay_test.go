package replay

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/trace"
)

func writeTree(t *testing.T) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tex"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tex", "a.exr"), bytes.Repeat([]byte("a"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scene.blend"), bytes.Repeat([]byte("b"), 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReplayStraceStyle(t *testing.T) {
	dir := writeTree(t)
	h := trace.Header{Format: trace.Format, Source: "strace", Root: "/show"}
	evs := []trace.Event{
		{T: 0, Pid: 1, Op: trace.OpStat, Path: "/show/scene.blend", Size: 3000},
		{T: 0.1, Pid: 1, Op: trace.OpOpen, Path: "/show/scene.blend", Fh: 3},
		{T: 0.2, Pid: 1, Op: trace.OpRead, Path: "/show/scene.blend", Fh: 3, Off: 0, Len: 4096, N: 3000},
		{T: 0.3, Pid: 1, Op: trace.OpClose, Path: "/show/scene.blend", Fh: 3},
		{T: 0.3, Pid: 1, Op: trace.OpStat, Path: "/show/tex/missing.exr", Err: "ENOENT"},
		{T: 0.4, Pid: 2, Op: trace.OpOpen, Path: "/show/tex", Fh: 4, Dir: true},
		{T: 0.4, Pid: 2, Op: trace.OpReaddir, Path: "/show/tex", Fh: 4},
		// A read whose open is not in the trace still reads its bytes.
		{T: 0.5, Pid: 2, Op: trace.OpRead, Path: "/show/tex/a.exr", Fh: 5, Off: 9000, Len: 4096, N: 1000},
		{T: 0.6, Pid: 2, Op: trace.OpMmap, Path: "/show/tex/a.exr", Fh: 5, Off: 0, Len: 1 << 20},
		{T: 0.7, Pid: 2, Op: trace.OpStat, Path: "/usr/lib/libc.so"},                        // outside the root
		{T: 0.7, Pid: 2, Op: trace.OpOpen, Path: "/show/out/f0001.exr", Fh: 6, Write: true}, // an output
		{T: 0.8, Pid: 2, Op: trace.OpEnd},
	}
	res, err := Run(context.Background(), h, evs, Options{Root: dir, MaxRead: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Bytes != 3000+1000+10000 {
		t.Errorf("bytes = %d, want 14000 (mmap replays the mapped range up to EOF)", res.Bytes)
	}
	if res.Opens != 2 || res.ENOENT != 1 || res.Skipped != 3 || res.Pids != 2 || res.Mismatches != 0 {
		t.Errorf("result = %+v", res)
	}
	if res.TTFB < 0 || res.TTFB > res.Wall {
		t.Errorf("ttfb %v outside [0, wall %v]", res.TTFB, res.Wall)
	}
	if res.Latency["read"].Count != 2 || res.Latency["stat"].Count != 2 {
		t.Errorf("latency counts = %+v", res.Latency)
	}
}

func TestReplayReportsUnexpectedErrors(t *testing.T) {
	dir := writeTree(t)
	h := trace.Header{Format: trace.Format, Source: "mount", Root: "/mnt/jitfs"}
	evs := []trace.Event{
		{Pid: 1, Op: trace.OpLookup, Path: "/mnt/jitfs/gone.exr", Size: 10},
		{Pid: 1, Op: trace.OpLookup, Path: "/mnt/jitfs/scene.blend", Err: "ENOENT"},
	}
	res, err := Run(context.Background(), h, evs, Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 1 || res.Mismatches != 1 {
		t.Fatalf("result = %+v", res)
	}
	if e := res.Err(); e == nil || !strings.Contains(e.Error(), "gone.exr") {
		t.Fatalf("Err() = %v", e)
	}
}

func TestReplayMapping(t *testing.T) {
	dir := writeTree(t)
	h := trace.Header{Format: trace.Format, Source: "strace", Root: "/"}
	evs := []trace.Event{{Pid: 1, Op: trace.OpStat, Path: "/old/show/scene.blend"}}
	res, err := Run(context.Background(), h, evs, Options{Root: "/", Map: []Mapping{{Old: "/old/show", New: dir}}})
	if err != nil || res.Err() != nil || res.Ops != 1 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if _, err := ParseMapping("nonsense"); err == nil {
		t.Error("ParseMapping accepted a value without =")
	}
}

func TestReplayBadRoot(t *testing.T) {
	if _, err := Run(context.Background(), trace.Header{}, nil, Options{Root: "/nonexistent/dir"}); err == nil {
		t.Fatal("no error for a missing root")
	}
	if _, err := Run(context.Background(), trace.Header{}, nil, Options{}); err == nil {
		t.Fatal("no error for an empty root")
	}
}
