package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The mount helper: `mount -t fuse.jitfs gs://BUCKET/PREFIX /mnt/show -o
// cache_dir=…,cache_size=…` and the fstab line
//
//	gs://BUCKET/PREFIX  /mnt/show  fuse.jitfs  cache_dir=/mnt/localssd/jitfs,cache_size=300GiB,_netdev  0 0
//
// work through /sbin/mount.fuse.jitfs, a link to this binary: mount(8) runs
// it as `mount.fuse.jitfs SOURCE DIR [-o OPTIONS] [-fnsv]`. It maps the
// options to `jitfs mount` flags, starts `jitfs mount` in the background
// (its own session, its log in a file), waits for its sd_notify READY=1 or
// its exit, and returns, as mount(8) expects of a helper. `umount DIR` or
// `jitfs unmount DIR` ends it.

// helperNames are the names mount(8) finds the helper by: mount.fuse.jitfs
// for -t fuse.jitfs (what fstab uses), mount.jitfs for -t jitfs.
var helperNames = []string{"mount.fuse.jitfs", "mount.jitfs"}

// isMountHelper reports whether the binary was run under a helper's name.
func isMountHelper(argv0 string) bool {
	base := filepath.Base(argv0)
	for _, n := range helperNames {
		if base == n {
			return true
		}
	}
	return false
}

// helperOptions maps each -o option to its `jitfs mount` flag.
var helperOptions = map[string]string{
	"cache_dir": "--cache-dir", "cache_size": "--cache-size", "endpoint": "--endpoint",
	"metadata_ttl": "--metadata-ttl", "op_timeout": "--op-timeout", "gcs_attempt_timeout": "--gcs-attempt-timeout",
	"verify": "--verify", "speculate": "--speculate", "prefetch_workers": "--prefetch-workers",
	"zone_cache": "--zone-cache", "zone_token_file": "--zone-token-file", "zone_timeout": "--zone-timeout",
	"socket": "--socket", "socket_group": "--socket-group", "metrics_addr": "--metrics-addr",
	"log_level": "--log-level", "log_format": "--log-format", "trace": "--trace",
}

// helperBools are -o options without a value, and what they set.
var helperBools = map[string]string{
	"allow_other": "--allow-other=true", "noallow_other": "--allow-other=false",
	"passthrough": "--passthrough=true", "nopassthrough": "--passthrough=false",
}

// helperIgnored are mount(8)'s own options, and ones every FUSE mount of
// jitfs has anyway: they are accepted so fstab lines read as people write
// them, and change nothing.
var helperIgnored = map[string]bool{
	"defaults": true, "ro": true, "auto": true, "noauto": true, "user": true, "nouser": true, "users": true,
	"rw": true, "_netdev": true, "nofail": true, "nosuid": true, "suid": true, "nodev": true, "dev": true, "noexec": true,
	"exec": true, "relatime": true, "noatime": true, "atime": true, "nodiratime": true,
	// Every jitfs mount has the kernel check modes itself (jitfs/fs.go).
	"default_permissions": true,
}

// helperRefused are FUSE options jitfs cannot honour, with the reason: an
// fstab line asking for them must fail rather than mount without them.
var helperRefused = map[string]string{
	"allow_root": "jitfs lets every user read the mount (allow_other) or only the mounting user (noallow_other), not root alone",
}

// speculationKinds are the values of speculate=. mount(8) splits -o at
// every comma, so a list given as speculate=siblings,sequences arrives as
// "speculate=siblings" and a bare "sequences": the helper joins them back.
var speculationKinds = map[string]bool{
	"all": true, "none": true, "off": true, "siblings": true, "sequences": true, "coopen": true, "metadata": true,
}

// helperArgs turns the -o options into `jitfs mount` flags, and reports
// every option it cannot take at once.
func helperArgs(opts []string) (args []string, logFile string, err error) {
	var bad []string
	speculate := -1 // the index in args of speculate='s value, once given
	for _, o := range opts {
		if speculate >= 0 && speculationKinds[o] {
			args[speculate] += "," + o
			continue
		}
		if o == "" || helperIgnored[o] || strings.HasPrefix(o, "x-") || strings.HasPrefix(o, "comment=") {
			continue
		}
		if why, ok := helperRefused[o]; ok {
			bad = append(bad, o+" ("+why+")")
			continue
		}
		if f, ok := helperBools[o]; ok {
			args = append(args, f)
			continue
		}
		k, v, hasValue := strings.Cut(o, "=")
		if k == "log_file" && hasValue {
			logFile = v
			continue
		}
		f, ok := helperOptions[k]
		switch {
		case !ok:
			bad = append(bad, o)
		case !hasValue || v == "":
			bad = append(bad, o+" (wants "+k+"=VALUE)")
		case k == "speculate":
			// '+' and ':' separate a list that mount(8) leaves whole.
			args = append(args, f, strings.NewReplacer("+", ",", ":", ",").Replace(v))
			speculate = len(args) - 1
		default:
			args = append(args, f, v)
		}
	}
	if len(bad) > 0 {
		known := make([]string, 0, len(helperOptions)+len(helperBools))
		for k := range helperOptions {
			known = append(known, k+"=")
		}
		for k := range helperBools {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, "", fmt.Errorf("%w: unknown or malformed mount options: %s (jitfs takes %s, log_file=, and mount(8)'s own)",
			errUsage, strings.Join(bad, ", "), strings.Join(known, " "))
	}
	return args, logFile, nil
}

// runMountHelper is the binary run as mount.fuse.jitfs.
func runMountHelper(args []string, stdout, stderr io.Writer) error {
	var pos, opts []string
	fake := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 == len(args) {
				return fmt.Errorf("%w: -o wants OPTIONS", errUsage)
			}
			i++
			opts = append(opts, strings.Split(args[i], ",")...)
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-t":
			i++ // the type: fuse.jitfs or jitfs
		case a == "-N":
			return fmt.Errorf("%w: -N (mount namespaces) is not supported", errUsage)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// -f (fake), -n (no mtab), -s (sloppy), -v (verbose).
			fake = fake || strings.Contains(a, "f")
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: want SOURCE MOUNTPOINT (gs://BUCKET[/PREFIX] DIR), got %q", errUsage, pos)
	}
	flags, logFile, err := helperArgs(opts)
	if err != nil {
		return err
	}
	if _, _, err := parseGSURL(pos[0]); err != nil {
		return err
	}
	if fake {
		return nil
	}
	if logFile == "" {
		mnt, _ := filepath.Abs(pos[1])
		logFile = filepath.Join("/var/log/jitfs", "mount"+strings.ReplaceAll(mnt, "/", "-")+".log")
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return fmt.Errorf("log_file: %w", err)
	}
	log, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log_file: %w", err)
	}
	defer log.Close()
	// A log_file reused across mounts holds earlier runs: an error shows
	// only what this run wrote, from here on.
	logStart, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("log_file: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// READY=1 arrives on a socket of our own, as systemd's would.
	dir, err := os.MkdirTemp("", "jitfs-mount-helper-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	cmd := exec.Command(self, append([]string{"mount", pos[0], pos[1]}, flags...)...)
	cmd.Env = append(withoutEnv(os.Environ(), "NOTIFY_SOCKET"), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session: the mount outlives mount(8) and the shell it ran in.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if bytes.Contains(buf[:n], []byte("READY=1")) {
				close(ready)
				return
			}
		}
	}()
	select {
	case <-ready:
		fmt.Fprintf(stdout, "jitfs: %s mounted at %s (pid %d, log %s)\n", pos[0], pos[1], cmd.Process.Pid, logFile)
		return nil
	case err := <-exited:
		return fmt.Errorf("jitfs mount exited before serving (%v): %s", err, lastLinesFrom(logFile, logStart, 3))
	case <-time.After(10 * time.Minute):
		// A guard against a hung start only: a start waits on GCS at most
		// its bucket check's bound.
		_ = cmd.Process.Kill()
		return errors.New("jitfs mount did not serve within 10 minutes: " + lastLinesFrom(logFile, logStart, 3))
	}
}

// withoutEnv drops a variable from an environment.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

// lastLines is the end of a log file, for an error message.
func lastLines(file string, n int) string { return lastLinesFrom(file, 0, n) }

// lastLinesFrom is the end of what a log file holds past offset from.
func lastLinesFrom(file string, from int64, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b = b[min(from, int64(len(b))):]
	if len(bytes.TrimSpace(b)) == 0 {
		return "(it wrote nothing to its log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
