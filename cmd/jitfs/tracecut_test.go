package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/bench"
	"github.com/jitfs/jitfs/trace"
)

// TestTraceCommandsOnCutTrace: `jitfs trace summary` and `jitfs replay`
// of a trace copied while it was being written (cut at a byte offset)
// warn on stderr, use the events before the cut and exit 0; cut inside
// its header, they fail with one line.
func TestTraceCommandsOnCutTrace(t *testing.T) {
	const src = "../../testdata/traces/blender_sh010_f01.jsonl.zst"
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	h, all, err := trace.ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// The replay root holds every file the whole trace found, at its size
	// (sparse: replay checks what opens and reads return, not the bytes).
	wl, err := bench.NewWorkload("f01", h, all)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for rel, size := range wl.Files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cut := func(n int) string {
		p := filepath.Join(dir, "cut.jsonl.zst")
		if err := os.WriteFile(p, b[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jitfs := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := execute(args, &out, &errb)
		return out.String(), errb.String(), code
	}
	replayArgs := func(p string) []string {
		return []string{"replay", p, "--root", root, "--map", h.Root + "=" + root, "--json"}
	}

	// The whole trace replays cleanly against the root: the cut ones are
	// measured against that.
	if _, stderr, code := jitfs(replayArgs(cut(len(b)))...); code != 0 || stderr != "" {
		t.Fatalf("whole trace: replay exit %d: %s", code, stderr)
	}

	for _, n := range []int{len(b) / 2, len(b) - 1} {
		p := cut(n)
		_, evs, rerr := trace.ReadAll(bytes.NewReader(b[:n]))
		if rerr == nil || len(evs) == 0 || len(evs) >= len(all) {
			t.Fatalf("cut at %d: the reader gave %d of %d events, err %v", n, len(evs), len(all), rerr)
		}
		out, stderr, code := jitfs("trace", "summary", "--json", p)
		var s trace.Summary
		if code != 0 || json.Unmarshal([]byte(out), &s) != nil {
			t.Fatalf("cut at %d: summary exit %d\n%s%s", n, code, out, stderr)
		}
		if s.Events != int64(len(evs)) || !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "truncated") || !oneLine(stderr) {
			t.Errorf("cut at %d: summary of %d events (the reader has %d), stderr %q", n, s.Events, len(evs), stderr)
		}
		out, stderr, code = jitfs(replayArgs(p)...)
		var res struct{ Ops int64 }
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("cut at %d: replay exit %d\n%s%s", n, code, out, stderr)
		}
		if res.Ops == 0 || !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "truncated") || !oneLine(stderr) {
			t.Errorf("cut at %d: replay ran %d operations, stderr %q", n, res.Ops, stderr)
		}
	}

	p := cut(100)
	for _, args := range [][]string{{"trace", "summary", p}, replayArgs(p)} {
		out, stderr, code := jitfs(args...)
		if code != 1 || out != "" || !oneLine(stderr) || !strings.Contains(stderr, "cut short inside its header") {
			t.Errorf("jitfs %s of a trace cut in its header: exit %d, stdout %q, stderr %q", args[0], code, out, stderr)
		}
	}
}
