package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/jitfs/jitfs"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages runs `go list -deps` over the module's packages (tests
// included, so test-only imports are held to the same floors).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"/...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.ImportPath == module+"/third_party" || strings.HasPrefix(p.ImportPath, module+"/third_party/") {
			continue // go-fuse, carried with a patch: not jitfs's layering
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of the module; the check would check nothing", len(pkgs))
	}
	return pkgs
}

func within(path, pre string) bool { return path == pre || strings.HasPrefix(path, pre+"/") }

// TestLayering enforces the floors the design rests on.
func TestLayering(t *testing.T) {
	rules := []struct {
		pkgs   []string // module-relative package roots the rule applies to
		banned []string // import path roots they must not depend on
		why    string
	}{
		{
			pkgs:   []string{"cache", "output", "namespace"},
			banned: []string{"github.com/hanwen/go-fuse/v2", module + "/jitfs"},
			why:    "the cache, the output areas and the namespace are FUSE-free: the daemon, benches and tests use them without a mount",
		},
		{
			pkgs:   []string{"gcs", "trace", "telemetry"},
			banned: []string{"github.com/hanwen/go-fuse/v2", module + "/jitfs", module + "/cache", module + "/namespace", module + "/output", module + "/prefetch", module + "/hooks"},
			why:    "the bucket client, traces and telemetry are leaves every layer above uses",
		},
		{
			pkgs:   []string{"namespace", "cache", "output", "prefetch", "hooks", "jitfs", "gcs", "trace", "telemetry", "replay", "bench"},
			banned: []string{module + "/cmd"},
			why:    "cmd/ is flags, signals and exit codes; nothing builds on it",
		},
	}
	pkgs := listPackages(t)
	checked := 0
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, r := range rules {
			applies := false
			for _, root := range r.pkgs {
				applies = applies || within(rel, root)
			}
			if !applies {
				continue
			}
			checked++
			for _, d := range p.Deps {
				for _, b := range r.banned {
					if within(d, b) {
						t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
					}
				}
			}
		}
		// Nothing imports a command, wherever it sits.
		for _, imp := range p.Imports {
			if within(imp, module+"/cmd") {
				t.Errorf("%s imports %s: commands are not libraries", p.ImportPath, imp)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no rule applied to any package")
	}
}

// TestProductionBuild: `go build -tags production ./cmd/jitfs` carries no
// GCS emulator, no Toxiproxy, no emulated WAN and no bench: what a node
// runs is the filesystem, not its test bench.
func TestProductionBuild(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	deps := func(tags string) map[string]bool {
		args := []string{"list", "-deps", "-f", "{{.ImportPath}}"}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		cmd := exec.Command("go", append(args, "./cmd/jitfs")...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	banned := []string{"github.com/fsouza/fake-gcs-server", "github.com/Shopify/toxiproxy/v2", module + "/internal/emulator",
		module + "/internal/wan", module + "/internal/zonecache", module + "/bench"}
	dev, prod := deps(""), deps("production")
	for _, b := range banned {
		inDev, inProd := false, false
		for p := range dev {
			inDev = inDev || within(p, b)
		}
		for p := range prod {
			inProd = inProd || within(p, b)
		}
		if !inDev {
			t.Errorf("the default build does not carry %s: the check would check nothing", b)
		}
		if inProd {
			t.Errorf("the production build carries %s", b)
		}
	}
	for _, p := range []string{module + "/jitfs", module + "/cache", module + "/gcs", module + "/internal/daemon"} {
		if !prod[p] {
			t.Errorf("the production build lacks %s", p)
		}
	}
	// The binary itself: the commands left out are not offered, and
	// asking for one says why instead of suggesting a near name.
	bin := filepath.Join(t.TempDir(), "jitfs")
	build := exec.Command("go", "build", "-tags", "production", "-o", bin, "./cmd/jitfs")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags production: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "--help").Output()
	if err != nil || strings.Contains(string(help), "demo ") || !strings.Contains(string(help), "mount ") {
		t.Errorf("production --help (%v):\n%s", err, help)
	}
	out, err = exec.Command(bin, "demo").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "demo is left out of production builds") {
		t.Errorf("production jitfs demo: %v: %s", err, out)
	}
}
