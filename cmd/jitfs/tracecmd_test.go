package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/trace"
)

// The recorded sample and its root; trace/strace/strace_test.go asserts
// its events one by one.
const (
	straceSample     = "../../trace/strace/testdata/sample.strace"
	straceSampleRoot = "/tmp/jitfs-strace-sample/show"
)

func runTraceForTest(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	switch args[0] {
	case "import-strace":
		err = runTraceImportStrace(context.Background(), args[1:], &o, &e)
	case "summary":
		err = runTraceSummary(context.Background(), args[1:], &o, &e)
	default:
		err = fmt.Errorf("no trace subcommand %q", args[0])
	}
	return o.String(), e.String(), err
}

func TestTraceImportStraceToFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sample.jsonl.zst")
	// Flags after the positional, as users type them.
	stdout, stderr, err := runTraceForTest("import-strace", straceSample, "--prefix", straceSampleRoot, "--note", "sample.c", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing (the trace went to -o)", stdout)
	}
	if !strings.Contains(stderr, "49 events") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr = %q, want one line of stats", stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, evs, err := trace.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if h.Source != "strace" || h.Root != straceSampleRoot || h.Note != "sample.c" || len(evs) != 49 {
		t.Errorf("header %+v, %d events", h, len(evs))
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestTraceImportStraceToStdout(t *testing.T) {
	stdout, _, err := runTraceForTest("import-strace", straceSample)
	if err != nil {
		t.Fatal(err)
	}
	h, evs, err := trace.ReadAll(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if h.Root != "/" || len(evs) <= 49 {
		t.Errorf("root %q, %d events", h.Root, len(evs))
	}
}

func TestTraceSummary(t *testing.T) {
	tr := filepath.Join(t.TempDir(), "t.jsonl.zst")
	if _, _, err := runTraceForTest("import-strace", "-o", tr, straceSample); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runTraceForTest("summary", tr, "--json", "--prefix", straceSampleRoot)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	for k, want := range map[string]float64{"events": 49, "opens": 10, "reads": 19, "bytes_read": 7786, "enoent": 1, "files": 5} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}

	stdout, _, err = runTraceForTest("summary", tr, "--prefix", straceSampleRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"source          strace, root /",
		"command         ./sample",
		"events          49 by 4 pids",
		"opens           10: 5 files, 2 directories, 0 failed, 1 for writing",
		"reads           19: 7.6 KiB returned, 7.2 KiB distinct, 1.06x",
		"mmaps           2: 12 KiB mapped",
		"ENOENT          1 on 1 distinct paths",
		straceSampleRoot + "/b.vdb",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "cache ") || strings.Contains(stdout, "recorder") {
		t.Errorf("an strace import has no cache outcomes or trailer:\n%s", stdout)
	}
}

func TestTraceSummaryOfTornTrace(t *testing.T) {
	var buf bytes.Buffer
	rec, err := trace.NewRecorder(nopWriteCloser{&buf}, trace.Header{Source: "mount", Root: "/mnt"}, trace.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.Record(trace.Event{Op: trace.OpRead, Path: "/mnt/a", N: 10, Cache: "miss", Fetched: 10})
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	tr := filepath.Join(t.TempDir(), "torn.jsonl.zst")
	if err := os.WriteFile(tr, buf.Bytes()[:buf.Len()-3], 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runTraceForTest("summary", tr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "truncated") {
		t.Errorf("stderr = %q", stderr)
	}
	if !strings.Contains(stdout, "source          mount") {
		t.Errorf("stdout = %q", stdout)
	}

	full := filepath.Join(t.TempDir(), "full.jsonl.zst")
	if err := os.WriteFile(full, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = runTraceForTest("summary", full)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cache           0 hits, 0 partial, 1 misses; 10 B fetched", "recorder        1 events written, 0 dropped"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

type nopWriteCloser struct{ *bytes.Buffer }

func (nopWriteCloser) Close() error { return nil }

func TestTraceCommandErrors(t *testing.T) {
	dir := t.TempDir()
	notStrace := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notStrace, []byte("hello\nworld\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl.zst")
	for _, c := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"import-strace"}, true, "want one STRACE_FILE"},
		{[]string{"import-strace", "a", "b"}, true, "want one STRACE_FILE"},
		{[]string{"import-strace", "--bogus", straceSample}, true, "unknown flag --bogus"},
		{[]string{"import-strace", "--prefix", "show", straceSample}, true, "must be an absolute path"},
		{[]string{"import-strace", "-o", out, filepath.Join(dir, "missing.strace")}, false, "no such file"},
		{[]string{"import-strace", "-o", out, notStrace}, false, "no strace system call lines"},
		{[]string{"import-strace", "-o", filepath.Join(dir, "no/such/dir/t.zst"), straceSample}, false, "no such file"},
		{[]string{"summary"}, true, "want one TRACE"},
		{[]string{"summary", filepath.Join(dir, "missing.zst")}, false, "no such file"},
		{[]string{"summary", notStrace}, false, "header is not JSON"},
		{[]string{"summary", "--prefix", "rel", notStrace}, true, "must be an absolute path"},
	} {
		_, _, err := runTraceForTest(c.args...)
		if err == nil || errors.Is(err, errUsage) != c.usage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q (usage error: %v)", c.args, err, c.want, c.usage)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed import left %s (%v)", out, err)
	}
	for _, args := range [][]string{{"help", "trace"}, {"trace", "import-strace", "-h"}, {"trace", "summary", "--help"}} {
		var o, e bytes.Buffer
		if code := execute(args, &o, &e); code != 0 || !strings.Contains(o.String(), "Usage:") || e.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, o.String(), e.String())
		}
	}
}

func TestTraceImportStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	err := runTraceImportStrace(ctx, []string{"-o", filepath.Join(t.TempDir(), "t"), straceSample}, &o, &e)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
