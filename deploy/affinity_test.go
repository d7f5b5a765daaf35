package deploy

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/jitfs/jitfs/internal/nomadmeta"
)

// TestNomadRenderJobAffinity: the render job prefers, with an affinity and
// never a constraint, the nodes whose daemon publishes the key of the
// task's --mount source in jitfs_sources (the key `jitfs affinity-key`
// prints), matched with set_contains_any against the comma-separated list
// the daemon publishes, with a positive weight within Nomad's -100..100.
func TestNomadRenderJobAffinity(t *testing.T) {
	const path = "jitfs-render.nomad.hcl"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		t.Fatalf("the job does not parse: %s", diags.Error())
	}
	job := block(t, f.Body.(*hclsyntax.Body), "job")
	group := block(t, job.Body, "group")
	attr := `"${meta.` + nomadmeta.MetaSources + `}"`
	for _, b := range append(blocks(job.Body, "constraint"), blocks(group.Body, "constraint")...) {
		if source(t, src, b.Body, "attribute") == attr {
			t.Errorf("a constraint on %s: nodes that hold none of the scene could never take the task", attr)
		}
	}
	var aff []*hclsyntax.Block
	for _, b := range append(blocks(job.Body, "affinity"), blocks(group.Body, "affinity")...) {
		if source(t, src, b.Body, "attribute") == attr {
			aff = append(aff, b)
		}
	}
	if len(aff) != 1 {
		t.Fatalf("%d affinities on %s, want 1", len(aff), attr)
	}
	a := aff[0].Body
	if got := source(t, src, a, "operator"); got != `"set_contains_any"` {
		t.Errorf("operator %s: the daemon publishes a comma-separated list, matched by set_contains_any", got)
	}
	w, err := strconv.Atoi(source(t, src, a, "weight"))
	if err != nil || w <= 0 || w > 100 {
		t.Errorf("weight %s: want a preference, 1 to 100", source(t, src, a, "weight"))
	}

	// The value holds the key of each --mount source of the task.
	task := block(t, group.Body, "task")
	args := source(t, src, block(t, task.Body, "config").Body, "args")
	mounts := regexp.MustCompile(`"--mount",\s*"gs://([^/":]+)/?([^":]*):`).FindAllStringSubmatch(args, -1)
	if len(mounts) == 0 {
		t.Fatal("no --mount gs://BUCKET/PREFIX:DIR in the task's args")
	}
	value, err := strconv.Unquote(source(t, src, a, "value"))
	if err != nil {
		t.Fatalf("value %s: %v", source(t, src, a, "value"), err)
	}
	keys := strings.Split(value, ",")
	for _, m := range mounts {
		prefix := strings.Trim(m[2], "/")
		if prefix != "" {
			prefix += "/"
		}
		want := nomadmeta.Key(nomadmeta.Source(m[1], prefix))
		found := false
		for _, k := range keys {
			found = found || k == want
		}
		if !found {
			t.Errorf("value %q lacks %s, the key of gs://%s/%s (jitfs affinity-key)", value, want, m[1], prefix)
		}
	}
	if !strings.Contains(string(src), "jitfs affinity-key gs://") {
		t.Error("the job does not say how the affinity's key is obtained (jitfs affinity-key)")
	}
}
