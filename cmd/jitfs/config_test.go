package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/internal/testworld"
)

// TestConfigDefaults: a node's settings file (JITFS_<FLAG>=VALUE lines,
// as systemd's EnvironmentFile reads them) and JITFS_ variables give
// jitfs mount's flag defaults; the environment beats the file, a flag
// beats both; another command's keys are ignored with a line; a bad value
// or line fails the start naming where it came from.
func TestConfigDefaults(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/a.tx", 1000)
	dir := t.TempDir()
	conf := filepath.Join(dir, "node.env")
	if err := os.WriteFile(conf, []byte("# the node's settings\nJITFS_CACHE_SIZE=2GiB\nexport JITFS_ENDPOINT=\""+w.Proxy.Addr()+
		"\"\nJITFS_STAGING_SIZE=50GiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(extra ...string) *jitfsd {
		t.Helper()
		mnt := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"mount", "gs://" + testBucket + "/show", mnt, "--cache-dir", filepath.Join(t.TempDir(), "cache"),
			"--config", conf}, extra...)
		d := &jitfsd{Daemon: testworld.StartDaemon(t, mnt, func() bool { return socketReady(mnt, args) }, args...), mnt: mnt}
		// The "serving" line with the budget comes just after the socket.
		testworld.WaitFor(t, "the serving line", func() bool { return strings.Contains(d.Log.String(), "jitfs: serving") })
		return d
	}
	d := start()
	log := d.Log.String()
	if !strings.Contains(log, "budget 2GiB") {
		t.Errorf("the file's JITFS_CACHE_SIZE was not the default:\n%s", log)
	}
	if !strings.Contains(log, "not flags of this command, ignored: JITFS_STAGING_SIZE") {
		t.Errorf("another command's key was not reported:\n%s", log)
	}
	mustRead(t, d.path("a.tx")) // JITFS_ENDPOINT from the file reached the emulator
	d.Stop()

	t.Setenv("JITFS_CACHE_SIZE", "3GiB")
	d = start()
	if log := d.Log.String(); !strings.Contains(log, "budget 3GiB") {
		t.Errorf("the environment did not beat the file:\n%s", log)
	}
	d.Stop()
	d = start("--cache-size", "1GiB")
	if log := d.Log.String(); !strings.Contains(log, "budget 1GiB") {
		t.Errorf("the flag did not beat the environment:\n%s", log)
	}
	d.Stop()

	t.Setenv("JITFS_METADATA_TTL", "soon")
	out, code := runJitfs(t, "mount", "gs://"+testBucket+"/show", dir)
	if code != 2 || !strings.Contains(out, "JITFS_METADATA_TTL=soon (from the environment)") || !oneLine(out) {
		t.Errorf("a bad JITFS_METADATA_TTL: exit %d, %q", code, out)
	}
	t.Setenv("JITFS_METADATA_TTL", "")
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("JITFS_CACHE_SIZE 2GiB\nCACHE_DIR=/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runJitfs(t, "mount", "gs://"+testBucket+"/show", dir, "--config", bad)
	if code != 2 || !strings.Contains(out, bad+":1: want KEY=VALUE") || !strings.Contains(out, bad+":2: CACHE_DIR is not a JITFS_ setting") {
		t.Errorf("a malformed file: exit %d, %q", code, out)
	}
	// Every bad value at once, each named with where it came from, in
	// the words the command line uses; JITFS_SOCKET is said to be no
	// setting rather than another command's.
	values := filepath.Join(dir, "values.env")
	if err := os.WriteFile(values, []byte("JITFS_VERIFY=fast\nJITFS_SPECULATE=bogus\nJITFS_LOG_LEVEL=loud\nJITFS_OP_TIMEOUT=5\nJITFS_SOCKET=/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JITFS_CACHE_SIZE", "abc")
	out, code = runJitfs(t, "mount", "gs://"+testBucket+"/show", dir, "--config", values)
	for _, want := range []string{
		"JITFS_VERIFY=fast (from " + values + "): want streaming or strict",
		"JITFS_SPECULATE=bogus (from " + values + ")",
		"JITFS_LOG_LEVEL=loud (from " + values + "): want debug, info, warn or error",
		"JITFS_OP_TIMEOUT=5 (from " + values + "): want a duration such as 5s",
		"JITFS_CACHE_SIZE=abc (from the environment): invalid size",
		"JITFS_SOCKET ignored: JITFS_SOCKET is the hook socket a render is given",
	} {
		if code != 2 || !strings.Contains(out, want) {
			t.Errorf("bad values: exit %d, no %q in:\n%s", code, want, out)
		}
	}
}
