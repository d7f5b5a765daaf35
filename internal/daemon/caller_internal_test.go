package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A caller other than root attaches tasks only at directories it owns,
// or under one it owns; root anywhere.
func TestCallerMayMountOnlyItsOwnDirectories(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the test chowns directories: run it as root (scripts/test.sh does)")
	}
	const uid = 65534
	root := t.TempDir()
	mine := filepath.Join(root, "mine")
	if err := os.Mkdir(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mine, uid, uid); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(root, "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(mine, "to-theirs")
	if err := os.Symlink(theirs, link); err != nil {
		t.Fatal(err)
	}
	req := func(dir string) AttachRequest {
		return AttachRequest{Outputs: []Source{{Bucket: "b", Dir: dir}}}
	}
	nobody := &Caller{UID: uid, GID: uid}
	for _, c := range []struct {
		caller *Caller
		dir    string
		ok     bool
	}{
		{nobody, mine, true},
		{nobody, filepath.Join(mine, "task", "out"), true}, // created under its own directory
		{nobody, theirs, false},
		{nobody, filepath.Join(theirs, "new"), false},
		{nobody, "/etc/cron.d", false},
		{nobody, link, false}, // a symlink of its own to another's directory
		{&Caller{UID: 0}, theirs, true},
		{nil, mine, false}, // no credentials: refused
	} {
		err := c.caller.mayMount(req(c.dir))
		if (err == nil) != c.ok {
			t.Errorf("caller %+v at %s: err %v, want ok=%v", c.caller, c.dir, err, c.ok)
		}
		if err != nil && c.caller != nil && !strings.Contains(err.Error(), "does not own") {
			t.Errorf("unclear refusal: %v", err)
		}
	}
}
