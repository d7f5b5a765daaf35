package deploy

import (
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// block finds the one nested block of typ under body, failing the test
// when there is not exactly one.
func block(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Block {
	t.Helper()
	var found []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %q blocks, want 1", len(found), typ)
	}
	return found[0]
}

// source is the text of an attribute's expression as written.
func source(t *testing.T, src []byte, body *hclsyntax.Body, name string) string {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		t.Fatalf("no %q attribute", name)
	}
	r := a.Expr.Range()
	return string(r.SliceBytes(src))
}

// TestNomadRenderJob: the render job parses as HCL and keeps the fixes
// its comments promise: placed only on nodes that say they have FUSE, an
// output prefix that a retried task shares (no allocation ID in it), the
// Blender hook at the path the docs install it to, and the client's
// max_kill_timeout named next to kill_timeout.
func TestNomadRenderJob(t *testing.T) {
	const path = "jitfs-render.nomad.hcl"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		t.Fatalf("the job does not parse: %s", diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	job := block(t, body, "job")
	if len(job.Labels) != 1 || job.Labels[0] == "" {
		t.Fatalf("job labels %q", job.Labels)
	}
	if got := source(t, src, job.Body, "type"); got != `"batch"` {
		t.Errorf("job type %s, want batch", got)
	}
	c := block(t, job.Body, "constraint")
	if got := source(t, src, c.Body, "attribute"); got != `"${meta.jitfs_fuse}"` {
		t.Errorf("constraint on %s, want the jitfs_fuse node meta", got)
	}
	task := block(t, block(t, job.Body, "group").Body, "task")
	if got := source(t, src, task.Body, "driver"); got != `"raw_exec"` {
		t.Errorf("driver %s: FUSE mounts need raw_exec (or a driver given /dev/fuse and CAP_SYS_ADMIN)", got)
	}
	args := source(t, src, block(t, task.Body, "config").Body, "args")
	var output string
	for _, line := range strings.Split(args, "\n") {
		if strings.Contains(line, `"--output"`) {
			output = line
		}
	}
	switch {
	case output == "":
		t.Error("no --output in the task's args")
	case strings.Contains(output, "NOMAD_ALLOC_ID"):
		t.Errorf("the output prefix names the allocation, so a retried task never resumes: %s", strings.TrimSpace(output))
	case !strings.Contains(output, "NOMAD_JOB_ID"):
		t.Errorf("the output prefix does not name the job: %s", strings.TrimSpace(output))
	}
	const hook = "/opt/jitfs/jitfs_prefetch.py"
	if !strings.Contains(args, `"`+hook+`"`) {
		t.Errorf("the task does not load the Blender hook from %s", hook)
	}
	doc, err := os.ReadFile("../docs/blender.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), hook) {
		t.Errorf("docs/blender.md does not install the hook at %s, where the job loads it", hook)
	}
	if got := source(t, src, task.Body, "kill_signal"); got != `"SIGTERM"` {
		t.Errorf("kill_signal %s: jitfs run flushes on SIGTERM", got)
	}
	source(t, src, task.Body, "kill_timeout")
	if !strings.Contains(string(src), "max_kill_timeout") {
		t.Error("the job does not say that the client's max_kill_timeout caps kill_timeout")
	}
}

// TestMountUnitCachePerInstance: instances of the mount unit never share a
// cache directory (a second daemon on one is refused).
func TestMountUnitCachePerInstance(t *testing.T) {
	src, err := os.ReadFile("jitfs-mount@.service")
	if err != nil {
		t.Fatal(err)
	}
	var cacheDir string
	for _, line := range strings.Split(string(src), "\n") {
		if i := strings.Index(line, "--cache-dir "); i >= 0 && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			cacheDir = strings.Fields(line[i+len("--cache-dir "):])[0]
		}
	}
	if cacheDir == "" {
		t.Fatal("the unit sets no --cache-dir")
	}
	if !strings.Contains(cacheDir, "%i") && !strings.Contains(cacheDir, "%I") && !strings.Contains(cacheDir, "${") {
		t.Errorf("--cache-dir %s is the same for every instance", cacheDir)
	}
}
