package main

import (
	"strings"
	"testing"
)

// Arguments that are empty, or a frame list given empty, are most likely
// unset variables: they are usage errors, not the current directory's
// whole subtree or a pattern taken for a literal name.
func TestPrefetchRejectsEmptyArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dry-run", ""}, "argument 1 is empty"},
		{[]string{"--dry-run", "/tmp/x", " "}, "argument 2 is empty"},
		{[]string{"--dry-run", "--frames", "", "/tmp/p.####.exr"}, "--frames is empty"},
		{[]string{"--dry-run", "--frames=", "/tmp/p.####.exr"}, "--frames is empty"},
		// Houdini's longest name: $F10 is no frame token, ${F4} is.
		{[]string{"--dry-run", "--frames", "1", "/tmp/p.$F10.exr"}, "only $F and $F1..$F9"},
	} {
		out, code := runJitfs(t, append([]string{"prefetch"}, tc.args...)...)
		if code != 2 || !strings.Contains(out, tc.want) || !oneLine(out) {
			t.Errorf("prefetch %q: exit %d, want 2 and %q: %s", tc.args, code, tc.want, out)
		}
	}
	dir := t.TempDir()
	out, code := runJitfs(t, "prefetch", "--dry-run", "--frames", "7", dir+"/p.${F4}_v2.exr")
	if code != exitPrefetchMissing || !strings.Contains(out, "missing   "+dir+"/p.0007_v2.exr") {
		t.Errorf("${F4}: exit %d: %s", code, out)
	}
}
