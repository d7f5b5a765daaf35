package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/cli/*.golden from what the command prints")

// cliRun runs the command line in-process, as the jitfs binary would, and
// renders what a user sees: the exit status, stdout and stderr.
func cliRun(t *testing.T, args ...string) string {
	t.Helper()
	// Flag defaults that come from the environment are shown in help.
	for _, k := range []string{"JITFS_JOB_ID", "JITFS_DAEMON", "JITFS_CONFIG", "JITFS_SOCKET"} {
		t.Setenv(k, "")
	}
	var o, e bytes.Buffer
	code := execute(args, &o, &e)
	return fmt.Sprintf("$ jitfs %s\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, o.String(), e.String())
}

// golden compares got with testdata/cli/name.golden (or rewrites it with
// -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "cli", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/jitfs -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test ./cmd/jitfs -run %s -update rewrites it):\n%s", name, path, t.Name(), got)
	}
}

// TestCLIHelpGolden pins every command's help: usage line, examples and
// grouped flags, on stdout with exit 0.
func TestCLIHelpGolden(t *testing.T) {
	paths := [][]string{{}}
	for _, c := range append(commands(), versionCommand()) {
		paths = append(paths, []string{c.name})
		for _, s := range c.subs {
			paths = append(paths, []string{c.name, s.name})
		}
	}
	for _, p := range paths {
		name := "help-" + strings.Join(append([]string{"jitfs"}, p...), "-")
		t.Run(name, func(t *testing.T) {
			got := cliRun(t, append(p, "--help")...)
			if !strings.Contains(got, "exit 0\n--- stdout\n") || !strings.HasSuffix(got, "--- stderr\n") {
				t.Errorf("help is not on stdout with exit 0:\n%s", got)
			}
			if !strings.Contains(got, "Usage:\n  jitfs") {
				t.Errorf("no usage line:\n%s", got)
			}
			if len(p) > 0 && !strings.Contains(got, "Examples:\n") && p[0] != "trace" {
				t.Errorf("no examples:\n%s", got)
			}
			golden(t, name, got)
		})
	}
}

// TestCLIErrorsGolden pins what a mistyped command line gets: one line
// naming the mistake and, where it can, the fix; exit 2.
func TestCLIErrorsGolden(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"no-command", nil},
		{"unknown-command", []string{"mont", "gs://b", "/mnt"}},
		{"unknown-subcommand", []string{"trace", "sumary", "t.jsonl.zst"}},
		{"no-subcommand", []string{"trace"}},
		{"unknown-flag", []string{"mount", "--cach-dir", "/x", "gs://b", "/mnt"}},
		{"one-dash", []string{"mount", "-cache-dir", "/x", "gs://b", "/mnt"}},
		{"duration-without-unit", []string{"prefetch", "--wait", "5", "/mnt/show/a.exr"}},
		{"bool-separate-value", []string{"mount", "--allow-other", "false", "gs://b", "/mnt"}},
		{"bool-bad-value", []string{"mount", "--allow-other=nope", "gs://b", "/mnt"}},
		{"int-bad-value", []string{"mount", "--prefetch-workers", "many", "gs://b", "/mnt"}},
		{"missing-value", []string{"flush", "/mnt/out", "--timeout"}},
		{"wrong-arguments", []string{"mount", "gs://b"}},
		{"bad-size", []string{"mount", "--cache-size", "lots", "gs://b", "/mnt"}},
		{"bad-values-at-once", []string{"mount", "--verify", "fast", "--cache-size", "NaN", "--log-level", "loud", "--cache-dir=", "gs://b", "/mnt"}},
		{"empty-argument", []string{"mount", "gs://b", ""}},
		{"one-dash-typo", []string{"mount", "-cach-dir", "/x", "gs://b", "/mnt"}},
		{"switch-value-other-case", []string{"mount", "--passthrough", "FALSE", "gs://b", "/mnt"}},
		{"help-unknown-topic", []string{"help", "trace", "sumary"}},
		{"help-flag-before-command", []string{"--help", "nosuch"}},
		{"completion-unknown-shell", []string{"completion", "tcsh"}},
		{"version-extra", []string{"--version", "x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := cliRun(t, c.args...)
			if c.name != "no-command" && c.name != "no-subcommand" {
				stderr := got[strings.Index(got, "--- stderr\n")+len("--- stderr\n"):]
				if strings.Count(stderr, "\n") != 1 || !strings.Contains(got, "exit 2\n") {
					t.Errorf("want one line on stderr and exit 2:\n%s", got)
				}
			}
			golden(t, "error-"+c.name, got)
		})
	}
}

// TestCLIBoolForms: both spellings people use for a switch's value work,
// and the one that cannot work is refused rather than taken as a path.
func TestCLIBoolForms(t *testing.T) {
	for _, args := range [][]string{{"--allow-other=false"}, {"--allow-other=true"}, {"--allow-other"}} {
		fl := describe(runMount)
		if err := fl.Parse(append(args, "gs://b", "/mnt")); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		if got := fl.Args(); len(got) != 2 {
			t.Errorf("%q: positional %q", args, got)
		}
	}
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{}, new([]string))
	c, rest, _ := root.Find([]string{"mount", "--allow-other", "false", "gs://b", "/mnt"})
	if err := checkArgs(c, rest); err == nil || !strings.Contains(err.Error(), "--allow-other=false") {
		t.Errorf("--allow-other false: %v", err)
	}
	// jitfs run: flags end at the command, so a command's own "false"
	// after "--" is its business.
	c, rest, _ = root.Find([]string{"run", "--mount", "gs://b:/mnt", "--allow-other", "--", "false"})
	if err := checkArgs(c, rest); err != nil {
		t.Errorf("run ... -- false: %v", err)
	}
}

// TestCLICompletion asks the completion engine what the shells' scripts
// ask it: flag names, a flag's choices, and the scripts themselves.
func TestCLICompletion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "mou"}, []string{"mount"}},
		{[]string{"__complete", "mount", "--cache-"}, []string{"--cache-dir", "--cache-size"}},
		{[]string{"__complete", "mount", "--verify", ""}, []string{"streaming", "strict"}},
		{[]string{"__complete", "prefetch", "--scope", ""}, []string{"frame", "job", "lookahead"}},
		{[]string{"__complete", "trace", ""}, []string{"import-strace", "summary"}},
		{[]string{"__complete", "daemon", "--speculate", "siblings,seq"}, []string{"siblings,sequences"}},
		{[]string{"completion", "bash"}, []string{"__start_jitfs"}},
		{[]string{"completion", "zsh"}, []string{"#compdef jitfs"}},
		{[]string{"completion", "fish"}, []string{"complete -c jitfs"}},
	} {
		var o, e bytes.Buffer
		if code := execute(c.args, &o, &e); code != 0 {
			t.Errorf("%q: exit %d: %s", c.args, code, e.String())
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(o.String(), w) {
				t.Errorf("%q: %q missing from:\n%s", c.args, w, o.String())
			}
		}
	}
}

// TestShippedCommandLinesParse: the command lines deploy/ ships (systemd
// units, the Nomad render job) parse with this command line, so a change
// of flag name or form cannot leave them starting a daemon that exits 2.
func TestShippedCommandLinesParse(t *testing.T) {
	vars := regexp.MustCompile(`\$\{[A-Za-z_]+\}|\$[A-Z_]+|%[a-zA-Z]`)
	var lines [][]string
	units, _ := filepath.Glob("../../deploy/*.service")
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		// Variables take the unit's Environment= defaults, the rest a
		// placeholder.
		env := map[string]string{}
		for _, l := range strings.Split(text, "\n") {
			if kv, ok := strings.CutPrefix(l, "Environment="); ok {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		}
		for _, l := range strings.Split(text, "\n") {
			if rest, ok := strings.CutPrefix(l, "ExecStart=/usr/local/bin/jitfs "); ok {
				rest = vars.ReplaceAllStringFunc(rest, func(v string) string {
					if d := env[strings.Trim(v, "${}")]; d != "" {
						return d
					}
					return "x"
				})
				lines = append(lines, strings.Fields(strings.ReplaceAll(rest, `"`, "")))
			}
		}
	}
	hcl, err := os.ReadFile("../../deploy/jitfs-render.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?s)command = "/usr/local/bin/jitfs"\s*args = \[(.*?)"--",`).FindSubmatch(hcl); m != nil {
		var args []string
		for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllSubmatch(m[1], -1) {
			args = append(args, vars.ReplaceAllString(string(q[1]), "x"))
		}
		lines = append(lines, append(args, "--", "true"))
	}
	if len(lines) < 4 {
		t.Fatalf("found %d jitfs command lines in deploy/, want the daemon, mount and output units and the render job", len(lines))
	}
	for _, args := range lines {
		root := newRoot(&bytes.Buffer{}, &bytes.Buffer{}, new([]string))
		c, rest, err := root.Find(args)
		if err != nil || c == root {
			t.Errorf("%q: no command (%v)", args, err)
			continue
		}
		if err := checkArgs(c, rest); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		if err := c.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	names := []string{"cache-dir", "cache-size", "staging-dir", "wait"}
	for word, want := range map[string]string{
		"cach-dir": " (did you mean --cache-dir?)", "wiat": " (did you mean --wait?)",
		"cache": " (did you mean --cache-dir or --cache-size?)", "zzzzzz": "",
	} {
		if got := didYouMean(word, names, "--"); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", word, got, want)
		}
	}
}
