package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestShippedUnitSettingsApply: every JITFS_ default a deploy/ unit sets
// (Environment=JITFS_…) names a flag of the command its ExecStart runs and
// parses as that flag's value, since an unknown JITFS_ variable in the
// environment is ignored without a word; and it reaches the flag, which
// the unit's command line does not override.
func TestShippedUnitSettingsApply(t *testing.T) {
	units, _ := filepath.Glob("../../deploy/*.service")
	vars := regexp.MustCompile(`\$\{[A-Za-z_]+\}|\$[A-Z_]+|%[a-zA-Z]`)
	checked := 0
	for _, path := range units {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		env := map[string]string{}
		var argv []string
		for _, l := range strings.Split(text, "\n") {
			if kv, ok := strings.CutPrefix(l, "Environment=JITFS_"); ok {
				k, v, _ := strings.Cut(kv, "=")
				env["JITFS_"+k] = strings.NewReplacer("%i", "example", "%f", "/example").Replace(v)
			}
			if rest, ok := strings.CutPrefix(l, "ExecStart=/usr/local/bin/jitfs "); ok {
				argv = strings.Fields(vars.ReplaceAllString(rest, "x"))
			}
		}
		if argv == nil || len(env) == 0 {
			continue
		}
		// $EXTRA_ARGS, empty by default, stands for nothing here.
		argv = slices.DeleteFunc(argv, func(a string) bool { return a == "x" })
		if argv[0] != "daemon" {
			argv = append(argv[:1], append([]string{"gs://b/p", "/example"}, argv[1:]...)...)
		}
		root := newRoot(&bytes.Buffer{}, &bytes.Buffer{}, new([]string))
		c, rest, err := root.Find(argv)
		if err != nil || c == root {
			t.Fatalf("%s: %q: no command (%v)", path, argv, err)
		}
		if err := c.ParseFlags(rest); err != nil {
			t.Fatalf("%s: %q: %v", path, argv, err)
		}
		for k := range env {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "JITFS_"), "_", "-"))
			if c.Flags().Lookup(name) == nil || configSkipped[name] {
				t.Errorf("%s: Environment=%s: jitfs %s has no flag --%s that it sets", path, k, c.Name(), name)
			}
		}
		if err := applyConfig(c.Flags(), func(k string) string { return env[k] }, io.Discard); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		for k, v := range env {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "JITFS_"), "_", "-"))
			if f := c.Flags().Lookup(name); f != nil && !f.Changed {
				t.Errorf("%s: --%s is %q, not set from the unit's %s=%s", path, name, f.Value.String(), k, v)
			}
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("checked %d units' settings, want the daemon, mount and output units", checked)
	}
}
