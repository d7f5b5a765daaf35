package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// blocks finds the nested blocks of typ under body.
func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var found []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b)
		}
	}
	return found
}

// block finds the one nested block of typ under body, failing the test
// when there is not exactly one.
func block(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Block {
	t.Helper()
	found := blocks(body, typ)
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
// its comments promise: placed only on nodes that say they have FUSE and
// the node daemon, attached to that daemon under the Nomad job's ID with
// no cache or staging flags of its own (the daemon's), an output prefix
// that a retried task shares (no allocation ID in it), the Blender hook at
// the path the docs install it to, the client's max_kill_timeout named
// next to kill_timeout, and a per-task size rather than a whole node.
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
	constraints := map[string]string{}
	for _, c := range blocks(job.Body, "constraint") {
		constraints[source(t, src, c.Body, "attribute")] = source(t, src, c.Body, "value")
	}
	for _, meta := range []string{"jitfs_fuse", "jitfs_daemon"} {
		attr := `"${meta.` + meta + `}"`
		if v, ok := constraints[attr]; !ok {
			t.Errorf("no constraint on the %s node meta (constraints: %v)", meta, constraints)
		} else if v != `"true"` {
			t.Errorf("constraint on %s = %s, want \"true\"", meta, v)
		}
	}
	group := block(t, job.Body, "group")
	block(t, group.Body, "restart")
	task := block(t, group.Body, "task")
	if got := source(t, src, task.Body, "driver"); got != `"raw_exec"` {
		t.Errorf("driver %s: the task must see the daemon's FUSE mounts at its task directory (raw_exec, in the host's mount namespace)", got)
	}
	args := source(t, src, block(t, task.Body, "config").Body, "args")
	// flag is the value written after a flag in args ("" if the flag is
	// absent), found on the flag's own line as the job writes it.
	flag := func(name string) (string, bool) {
		for _, line := range strings.Split(args, "\n") {
			if i := strings.Index(line, `"`+name+`"`); i >= 0 {
				rest := strings.TrimLeft(line[i+len(name)+2:], ", ")
				if v, _, ok := strings.Cut(rest, ","); ok {
					return strings.TrimSpace(v), true
				}
				return strings.TrimSpace(rest), true
			}
		}
		return "", false
	}
	if v, ok := flag("--daemon"); !ok {
		t.Error("the task does not attach to the node daemon (no --daemon): it would mount with its own cache")
	} else if v != `"/run/jitfs/daemon.sock"` {
		t.Errorf("--daemon %s, want the daemon unit's socket /run/jitfs/daemon.sock", v)
	}
	if v, ok := flag("--job"); !ok {
		t.Error("the task names no --job (the tasks of one Nomad job share a snapshot)")
	} else if v != `"${NOMAD_JOB_ID}"` {
		t.Errorf("--job %s, want \"${NOMAD_JOB_ID}\" (the tasks of one Nomad job share a snapshot)", v)
	}
	for _, daemons := range []string{"--cache-dir", "--cache-size", "--staging-dir", "--staging-size"} {
		if _, ok := flag(daemons); ok {
			t.Errorf("the task passes %s, which is the node daemon's (jitfs run ignores it when attached)", daemons)
		}
	}
	output, _ := flag("--output")
	switch {
	case output == "":
		t.Error("no --output in the task's args")
	case strings.Contains(output, "NOMAD_ALLOC_ID"):
		t.Errorf("the output prefix names the allocation, so a retried task never resumes: %s", output)
	case !strings.Contains(output, "NOMAD_JOB_ID"):
		t.Errorf("the output prefix does not name the job: %s", output)
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
	for _, code := range []string{"75", "69"} {
		if !regexp.MustCompile(`(?m)^#\s+` + code + `\s`).Match(src) {
			t.Errorf("the job's header does not say what exit %s means", code)
		}
	}
	// Several tasks share a node now: a task that asks for a 16-core
	// node (or more) is the old one-per-node sizing.
	res := block(t, task.Body, "resources")
	for name, max := range map[string]int{"cores": 8, "cpu": 16000, "memory": 16384} {
		if _, ok := res.Body.Attributes[name]; !ok {
			continue
		}
		n, err := strconv.Atoi(source(t, src, res.Body, name))
		if err != nil {
			t.Errorf("resources %s: %v", name, err)
		} else if n >= max {
			t.Errorf("resources %s = %d: a task's share of a node, not a whole node", name, n)
		}
	}
}

// unit is a systemd unit file as sections of key=value lines, a key's
// values in order (comments dropped, backslash continuations joined).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	var section, pending string
	for n, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			pending += l + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n+1, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u
}

// get is a key's last value in a section ("" if unset).
func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestDaemonUnit: the node daemon's unit is what the daemon and the tasks
// that attach to it need: sd_notify readiness, a restart on any exit, the
// socket directory /run/jitfs kept across restarts, SIGTERM to the daemon
// with time to unmount, `jitfs daemon` given the node's cache, and no
// mount namespace of its own (its mounts must be visible to tasks). Its
// settings are JITFS_ variables with defaults in the unit, which
// /etc/jitfs/daemon.env overrides (unitSettingsFromFile).
func TestDaemonUnit(t *testing.T) {
	u := parseUnit(t, "jitfs-daemon.service")
	for _, want := range []struct{ section, key, value string }{
		{"Service", "Type", "notify"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "Restart", "always"},
		{"Service", "RuntimeDirectory", "jitfs"},
		{"Service", "RuntimeDirectoryPreserve", "yes"},
		{"Service", "KillMode", "mixed"},
		{"Service", "KillSignal", "SIGTERM"},
		{"Service", "LimitNOFILE", "1048576"},
		{"Service", "EnvironmentFile", "-/etc/jitfs/daemon.env"},
		{"Unit", "StartLimitIntervalSec", "0"},
		{"Install", "WantedBy", "multi-user.target"},
	} {
		if got := u.get(want.section, want.key); got != want.value {
			t.Errorf("[%s] %s=%q, want %q", want.section, want.key, got, want.value)
		}
	}
	if u.get("Service", "TimeoutStopSec") == "" {
		t.Error("no TimeoutStopSec: the daemon needs time to unmount every task's mounts")
	}
	for _, dep := range []string{"network-online.target", "local-fs.target"} {
		if !strings.Contains(u.get("Unit", "After"), dep) {
			t.Errorf("not ordered after %s", dep)
		}
	}
	if !strings.Contains(u.get("Unit", "Wants"), "network-online.target") {
		t.Error("does not want network-online.target")
	}
	if user := u.get("Service", "User"); user != "" && user != "root" {
		t.Errorf("User=%s: the daemon mounts FUSE at task directories as root", user)
	}
	for _, ns := range []string{"PrivateTmp", "ProtectSystem", "ProtectHome", "PrivateDevices", "PrivateMounts",
		"ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "RootDirectory", "MountFlags"} {
		if v := u.get("Service", ns); v != "" {
			t.Errorf("%s=%s gives the daemon its own mount namespace, so tasks never see its mounts", ns, v)
		}
	}
	execs := u["Service"]["ExecStart"]
	if len(execs) != 1 {
		t.Fatalf("%d ExecStart lines, want 1", len(execs))
	}
	argv := strings.Fields(execs[0])
	if len(argv) < 2 || !strings.HasSuffix(argv[0], "/jitfs") || argv[1] != "daemon" {
		t.Fatalf("ExecStart=%s does not run `jitfs daemon`", execs[0])
	}
	flags := map[string]string{}
	for i, a := range argv[2:] {
		if strings.HasPrefix(a, "--") && i+3 < len(argv) {
			flags[a] = argv[i+3]
		}
	}
	if s := flags["--socket"]; s != "/run/jitfs/daemon.sock" {
		t.Errorf("--socket %q: not the /run/jitfs/daemon.sock that jitfs run and the Nomad job use", s)
	}
	defaults := unitSettingsFromFile(t, u, "jitfs-daemon.service")
	for _, k := range []string{"JITFS_CACHE_DIR", "JITFS_CACHE_SIZE", "JITFS_STAGING_DIR", "JITFS_STAGING_SIZE"} {
		if defaults[k] == "" {
			t.Errorf("no Environment=%s=… default: the daemon would use its own, not the node's local SSD", k)
		}
	}
	// Every variable ExecStart and ExecStartPre use has a default, so the
	// unit starts with no environment file at all.
	for _, cmd := range append(execs, u["Service"]["ExecStartPre"]...) {
		for _, m := range regexp.MustCompile(`\$\{?([A-Z_][A-Z0-9_]*)\}?`).FindAllStringSubmatch(cmd, -1) {
			if _, ok := defaults[m[1]]; !ok {
				t.Errorf("%s uses $%s, which has no Environment= default", cmd, m[1])
			}
		}
	}
}

// unitSettingsFromFile checks that a jitfs unit takes its settings from
// its environment file: it reads the file after its Environment= lines,
// and its ExecStart passes no flag that a JITFS_ variable could set
// (only --socket, whose variable means the render's hook socket), so a
// JITFS_CACHE_SIZE in the file is never silently overridden. It returns
// the unit's Environment= defaults.
func unitSettingsFromFile(t *testing.T, u unit, name string) map[string]string {
	t.Helper()
	if u.get("Service", "EnvironmentFile") == "" {
		t.Errorf("%s: no EnvironmentFile=", name)
	}
	defaults := map[string]string{}
	for _, e := range u["Service"]["Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		defaults[k] = v
	}
	for _, cmd := range u["Service"]["ExecStart"] {
		for _, a := range strings.Fields(cmd) {
			if strings.HasPrefix(a, "--") && a != "--socket" {
				t.Errorf("%s: ExecStart passes %s, which would override JITFS_%s in the environment file", name, a,
					strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(a, "--"), "-", "_")))
			}
		}
	}
	return defaults
}

// TestMountUnitCachePerInstance: instances of the mount unit never share a
// cache directory by default (a second daemon on one is refused), and
// the mount and output units take their settings from their files.
func TestMountUnitCachePerInstance(t *testing.T) {
	u := parseUnit(t, "jitfs-mount@.service")
	cacheDir := unitSettingsFromFile(t, u, "jitfs-mount@.service")["JITFS_CACHE_DIR"]
	if cacheDir == "" {
		t.Fatal("the unit sets no JITFS_CACHE_DIR default")
	}
	if !strings.Contains(cacheDir, "%i") && !strings.Contains(cacheDir, "%I") {
		t.Errorf("JITFS_CACHE_DIR=%s is the same for every instance", cacheDir)
	}
	if !strings.Contains(u.get("Service", "ExecStartPre"), "${JITFS_CACHE_DIR}") {
		t.Errorf("ExecStartPre=%s does not create the cache directory", u.get("Service", "ExecStartPre"))
	}
	out := parseUnit(t, "jitfs-output@.service")
	if dir := unitSettingsFromFile(t, out, "jitfs-output@.service")["JITFS_STAGING_DIR"]; !strings.Contains(dir, "%i") {
		t.Errorf("JITFS_STAGING_DIR=%q is the same for every instance", dir)
	}
}

// TestUnitsVerify runs `systemd-analyze verify` on every unit here, the
// node daemon's and the zone cache's included, where systemd-analyze is
// installed. The units name /usr/local/bin/jitfs (and start.sh), which a test machine need not have: it
// verifies copies that run /bin/true instead, templates as an "example"
// instance. verify exits 0 on unknown keys and bad values, so any output
// fails the test.
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	units, err := filepath.Glob("*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units: %v", err)
	}
	zone, err := filepath.Glob("zone-cache/*.service")
	if err != nil || len(zone) == 0 {
		t.Fatalf("no zone cache unit: %v", err)
	}
	units = append(units, zone...)
	dir := t.TempDir()
	var names []string
	for _, u := range units {
		src, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(u), ".service")
		if strings.HasSuffix(name, "@") {
			name += "example"
		}
		name += ".service"
		fixed := strings.ReplaceAll(string(src), "/usr/local/bin/jitfs", "/bin/true")
		fixed = strings.ReplaceAll(fixed, "/usr/local/lib/jitfs/zone-cache/start.sh", "/bin/true")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fixed), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, "./"+name)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, names...)...)
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	if len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify %s:\n%s", strings.Join(names, " "), out)
	}
}

// TestMountUnitsNotify: the long-running mount and output area units wait
// for jitfs's own READY=1 (both commands send it once they serve), so a
// unit ordered after them finds the mount up.
func TestMountUnitsNotify(t *testing.T) {
	for _, name := range []string{"jitfs-mount@.service", "jitfs-output@.service"} {
		u := parseUnit(t, name)
		if got := u.get("Service", "Type"); got != "notify" {
			t.Errorf("%s: Type=%q, want notify", name, got)
		}
		if got := u.get("Service", "NotifyAccess"); got != "main" {
			t.Errorf("%s: NotifyAccess=%q, want main", name, got)
		}
	}
}
