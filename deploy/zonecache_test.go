package deploy

import (
	"io/fs"
	"os/exec"
	"regexp"
	"testing"
)

// TestZoneCacheFiles: the embedded zone cache is complete (what
// internal/zonecache and `jitfs bench` write out and run), start.sh parses,
// and every @NAME@ placeholder of the template is one start.sh fills, so a
// placeholder added to one file and not the other fails here rather than
// as an nginx syntax error on some operator's machine.
func TestZoneCacheFiles(t *testing.T) {
	zc := ZoneCache()
	script, err := fs.ReadFile(zc, "start.sh")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := fs.ReadFile(zc, "nginx.conf.template")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(zc, "jitfs-zone-cache.service"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", "zone-cache/start.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n start.sh: %v\n%s", err, out)
	}
	filled := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^sub ([A-Z_]+) `).FindAllSubmatch(script, -1) {
		filled[string(m[1])] = true
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`@([A-Z_]+)@`).FindAllSubmatch(tmpl, -1) {
		used[string(m[1])] = true
		if !filled[string(m[1])] {
			t.Errorf("the template's @%s@ is never filled by start.sh", m[1])
		}
	}
	for name := range filled {
		if !used[name] {
			t.Errorf("start.sh fills @%s@, which the template does not use", name)
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d placeholders; the check is reading the wrong thing", len(used))
	}
}
