package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/spf13/pflag"
)

// A node's settings live in one file that its systemd units and its Nomad
// jobs share: KEY=VALUE lines, as systemd's EnvironmentFile= and Nomad's
// env and template blocks read them. Each flag of `jitfs daemon`, `jitfs
// mount` and `jitfs output` takes its default from JITFS_<FLAG> (the flag's
// name in capitals, '-' as '_': --cache-size is JITFS_CACHE_SIZE), first in
// the file that --config (or $JITFS_CONFIG) names, then in the
// environment, and a flag on the command line overrides both.

// configSkipped are flags whose JITFS_ variable already means something
// else to jitfs: $JITFS_SOCKET is the hook socket a render command is
// given, never a daemon's own socket.
var configSkipped = map[string]bool{"socket": true, "config": true}

// configKey is the variable that holds flag name's default.
func configKey(name string) string {
	return "JITFS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// configFlag adds --config to a command's flags.
func configFlag(fl *pflag.FlagSet) {
	fl.String("config", "", "file of JITFS_<FLAG>=VALUE lines giving this command's flag defaults (default $JITFS_CONFIG); "+
		"the environment's JITFS_<FLAG> overrides the file, a flag overrides both")
}

// applyConfig sets the flags the command line did not give (fl is
// parsed) from the config file and the environment. Every bad line and
// value is reported at once; notices go to stderr.
func applyConfig(fl *pflag.FlagSet, getenv func(string) string, stderr io.Writer) error {
	file := getenv("JITFS_CONFIG")
	if f := fl.Lookup("config"); f != nil && f.Changed {
		file = f.Value.String()
	}
	keys := map[string]string{} // variable -> flag name
	fl.VisitAll(func(f *pflag.Flag) {
		if !configSkipped[f.Name] && !f.Changed {
			keys[configKey(f.Name)] = f.Name
		}
	})
	all := map[string]bool{} // every flag's variable, given or not
	fl.VisitAll(func(f *pflag.Flag) {
		if !configSkipped[f.Name] {
			all[configKey(f.Name)] = true
		}
	})
	vals := map[string]string{}
	from := map[string]string{}
	var errs []string
	if file != "" {
		fileVals, others, err := readConfig(file, all)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		var skipped []string
		others = slices.DeleteFunc(others, func(k string) bool {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "JITFS_"), "_", "-"))
			if configSkipped[name] && fl.Lookup(name) != nil {
				skipped = append(skipped, k)
				return true
			}
			return false
		})
		if len(skipped) > 0 {
			fmt.Fprintf(stderr, "jitfs %s: %s: %s ignored: JITFS_SOCKET is the hook socket a render is given, not a setting; use --socket\n",
				fl.Name(), file, strings.Join(skipped, ", "))
		}
		if len(others) > 0 {
			// One file serves the node's daemon, mounts and output areas:
			// another command's keys are expected, a typo is shown.
			fmt.Fprintf(stderr, "jitfs %s: %s: not flags of this command, ignored: %s\n", fl.Name(), file, strings.Join(others, ", "))
		}
		for k, v := range fileVals {
			if keys[k] != "" {
				vals[k], from[k] = v, file
			}
		}
	}
	for k := range keys {
		if v := getenv(k); v != "" {
			vals[k], from[k] = v, "the environment"
		}
	}
	for _, k := range sortedKeys(vals) {
		f := fl.Lookup(keys[k])
		if err := fl.Set(keys[k], vals[k]); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%s (from %s): want %s", k, vals[k], from[k], valueHint(f)))
		} else if err := checkValue(f.Name, vals[k]); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%s (from %s): %v", k, vals[k], from[k], err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", errUsage, strings.Join(errs, "; "))
	}
	return nil
}

// readConfig reads KEY=VALUE lines: blank lines and # comments skipped,
// values optionally in quotes. It returns the values of keys that name
// flags, and the keys that do not; a line without '=' or a key outside
// JITFS_ is an error.
func readConfig(file string, known map[string]bool) (vals map[string]string, others []string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	vals = map[string]string{}
	var bad []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s:%d: want KEY=VALUE", file, n))
		case !strings.HasPrefix(k, "JITFS_"):
			bad = append(bad, fmt.Sprintf("%s:%d: %s is not a JITFS_ setting", file, n, k))
		case !known[k]:
			others = append(others, k)
		default:
			vals[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("--config %s: %w", file, err)
	}
	if len(bad) > 0 {
		return nil, nil, errors.New(strings.Join(bad, "; "))
	}
	return vals, others, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkValue checks the value of a string flag whose syntax jitfs knows,
// so a bad one is named with where it came from, and all of them at once,
// rather than by the first use that trips on it.
func checkValue(name, v string) error {
	var err error
	switch {
	case (strings.HasSuffix(name, "-size") || strings.HasSuffix(name, "-bytes")) && v != "0":
		// 0 is left to the command: the demo's --show-size takes it.
		_, err = parseSize(v)
	case strings.HasSuffix(name, "-dir") && strings.TrimSpace(v) == "":
		err = errors.New("want a directory")
	case name == "verify" && v != "streaming" && v != "strict":
		err = errors.New("want streaming or strict")
	case name == "log-level":
		var lv slog.Level
		if lv.UnmarshalText([]byte(v)) != nil {
			err = errors.New("want debug, info, warn or error")
		}
	case name == "log-format" && v != "text" && v != "json":
		err = errors.New("want text or json")
	case name == "speculate":
		_, err = daemon.ParseSpeculation(v)
	}
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	return nil
}

// checkValues checks every flag the command line gave with checkValue,
// and reports every bad one at once.
func checkValues(fl *pflag.FlagSet) error {
	var errs []string
	fl.Visit(func(f *pflag.Flag) {
		if f.Value.Type() == "string" {
			if err := checkValue(f.Name, f.Value.String()); err != nil {
				v := f.Value.String()
				if v == "" || strings.ContainsAny(v, " \t") {
					v = strconv.Quote(v)
				}
				errs = append(errs, fmt.Sprintf("--%s %s: %v", f.Name, v, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", errUsage, strings.Join(errs, "; "))
	}
	return nil
}
