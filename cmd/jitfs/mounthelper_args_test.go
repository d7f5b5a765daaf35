package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestMountHelperSpeculateList: mount(8) splits -o at every comma, so a
// speculate= list is written with '+' or ':', or with commas whose bare
// kinds the helper joins back to the speculate= before them.
func TestMountHelperSpeculateList(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want []string
	}{
		{[]string{"speculate=siblings+sequences"}, []string{"--speculate", "siblings,sequences"}},
		{[]string{"speculate=siblings:coopen:metadata"}, []string{"--speculate", "siblings,coopen,metadata"}},
		{[]string{"speculate=siblings", "sequences", "_netdev", "coopen"}, []string{"--speculate", "siblings,sequences,coopen"}},
		{[]string{"speculate=none", "cache_size=1GiB"}, []string{"--speculate", "none", "--cache-size", "1GiB"}},
	} {
		args, _, err := helperArgs(tc.opts)
		if err != nil || !reflect.DeepEqual(args, tc.want) {
			t.Errorf("%q: %q, %v; want %q", tc.opts, args, err, tc.want)
		}
	}
	// A kind with no speculate= before it is no option of its own.
	if _, _, err := helperArgs([]string{"sequences", "speculate=siblings"}); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), ": sequences") {
		t.Errorf("a bare kind before speculate=: %v", err)
	}
}

// TestMountHelperFUSEPermissionOptions: default_permissions, common in FUSE
// fstab lines, is what every jitfs mount does anyway; allow_root, which
// jitfs cannot honour, fails the mount with the reason.
func TestMountHelperFUSEPermissionOptions(t *testing.T) {
	if args, _, err := helperArgs([]string{"default_permissions", "allow_other"}); err != nil || !reflect.DeepEqual(args, []string{"--allow-other=true"}) {
		t.Errorf("default_permissions: %q, %v", args, err)
	}
	_, _, err := helperArgs([]string{"allow_root"})
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "allow_root (jitfs lets every user read the mount (allow_other) or only the mounting user (noallow_other), not root alone)") {
		t.Errorf("allow_root: %v", err)
	}
}

// TestMountHelperErrorIsThisRunsLog: with a log_file that earlier mounts
// wrote to, a failed start's error shows what this start wrote, not the
// end of the earlier runs.
func TestMountHelperErrorIsThisRunsLog(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "jitfs.log")
	if err := os.WriteFile(logFile, []byte("an earlier run's line one\nline two\nline three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// The helper starts this test binary as jitfs (testworld.Main's child).
	t.Setenv("JITFS_TEST_MAIN", "1")
	err := runMountHelper([]string{"gs://" + testBucket + "/show", mnt, "-o",
		"cache_dir=" + filepath.Join(dir, "cache") + ",cache_size=lots,socket=none,log_file=" + logFile}, &strings.Builder{}, &strings.Builder{})
	if err == nil {
		t.Fatal("the mount started with cache_size=lots")
	}
	if msg := err.Error(); strings.Contains(msg, "earlier run") || strings.Contains(msg, "line two") || !strings.Contains(msg, `invalid size "lots"`) {
		t.Errorf("error %q: want this run's own message alone", msg)
	}
}
