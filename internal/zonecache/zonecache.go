package zonecache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/deploy"
)

// Options are start.sh's arguments (deploy/zone-cache/start.sh --help).
type Options struct {
	// Listen is HOST:PORT; "" picks a free port on 127.0.0.1.
	Listen string
	// Origin is the GCS JSON API endpoint, http(s)://HOST[:PORT].
	Origin string
	// CacheDir holds the rendered configuration, nginx's pid and temp
	// files and the cache itself.
	CacheDir string
	// MaxSize bounds the cache's bytes on disk (nginx's max_size).
	MaxSize int64
	// Allow, TokenFile and Open say who may read; start.sh refuses to
	// start with none of them.
	Allow     []string
	TokenFile string
	Open      bool
	// OriginTokenFile holds the OAuth access token the zone sends to the
	// origin; start.sh reloads nginx when it changes.
	OriginTokenFile string
	// OriginCAFile verifies an https origin (default: the system bundle).
	OriginCAFile string
	// Slice is the slice size in bytes; 0 keeps start.sh's default.
	Slice int64
	// Log receives start.sh's and nginx's stderr (default: discarded;
	// the last lines are in Start's error either way).
	Log io.Writer
}

// Validate catches in Go what start.sh would refuse, so a caller gets the
// error without a process started; start.sh checks everything again (and
// more: sizes, addresses, token contents) for operators who run it alone.
func (o Options) Validate() error {
	switch {
	case o.Origin == "":
		return errors.New("zonecache: Origin is required (the GCS JSON API endpoint)")
	case o.CacheDir == "":
		return errors.New("zonecache: CacheDir is required")
	case o.MaxSize <= 0:
		return errors.New("zonecache: MaxSize is required")
	case o.Slice < 0:
		return fmt.Errorf("zonecache: Slice %d is negative", o.Slice)
	}
	return nil
}

// args is o as start.sh's command line.
func (o Options) args() []string {
	a := []string{"--listen", o.Listen, "--origin", o.Origin, "--cache-dir", o.CacheDir,
		"--max-size", strconv.FormatInt(o.MaxSize, 10)}
	for _, c := range o.Allow {
		a = append(a, "--allow", c)
	}
	if o.TokenFile != "" {
		a = append(a, "--token-file", o.TokenFile)
	}
	if o.Open {
		a = append(a, "--open")
	}
	if o.OriginTokenFile != "" {
		a = append(a, "--origin-token-file", o.OriginTokenFile)
	}
	if o.OriginCAFile != "" {
		a = append(a, "--origin-ca-file", o.OriginCAFile)
	}
	if o.Slice != 0 {
		a = append(a, "--slice", strconv.FormatInt(o.Slice, 10))
	}
	return a
}

// Proc is a running zone cache.
type Proc struct {
	opts   Options // Listen fixed to the port first bound, so Restart keeps it
	nginx  string
	script string // start.sh in a temp dir of its own
	tmp    string

	// mu guards the fields below; Kill, Stop and Restart hold it for their
	// whole run so they never interleave.
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	err  error         // cmd's exit, valid once done is closed
	logs *tail
	// logged is closed when start.sh's output has all been read (every
	// holder of the pipe has exited).
	logged chan struct{}
}

// Available says whether this machine can run a zone cache: nginx built with
// the slice module, and bash for start.sh.
func Available() error {
	_, err := findNginx()
	return err
}

func findNginx() (string, error) {
	if _, err := exec.LookPath("bash"); err != nil {
		return "", errors.New("zonecache: bash is not installed (start.sh is a bash script)")
	}
	path, err := exec.LookPath("nginx")
	if err != nil {
		// Debian installs it in /usr/sbin, which a non-root PATH may lack.
		path = "/usr/sbin/nginx"
		if _, err := os.Stat(path); err != nil {
			return "", errors.New("zonecache: nginx is not installed (apt-get install nginx-light; scripts/test.sh installs it)")
		}
	}
	out, err := exec.Command(path, "-V").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("zonecache: %s -V: %v", path, err)
	}
	if !bytes.Contains(out, []byte("--with-http_slice_module")) {
		return "", fmt.Errorf("zonecache: %s lacks the slice module (Debian's nginx-light has it)", path)
	}
	return path, nil
}

// Start writes the embedded deploy/zone-cache files to a temp dir, runs
// start.sh and returns once the zone cache answers /healthz.
func Start(ctx context.Context, o Options) (*Proc, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	nginx, err := findNginx()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "jitfs-zone-cache-")
	if err != nil {
		return nil, fmt.Errorf("zonecache: %w", err)
	}
	if err := os.CopyFS(tmp, deploy.ZoneCache()); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("zonecache: write the zone cache files: %w", err)
	}
	p := &Proc{opts: o, nginx: nginx, script: filepath.Join(tmp, "start.sh"), tmp: tmp}
	if o.Listen != "" {
		if err := p.start(ctx); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		return p, nil
	}
	// A free port is found by binding port 0 and closing it for nginx to
	// bind: another process may take it in between, so a bind failure
	// tries another port.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		p.opts.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = p.start(ctx)
		if err == nil {
			return p, nil
		}
		if attempt >= 4 || !strings.Contains(err.Error(), "Address already in use") {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("zonecache: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs start.sh with p.opts and waits for /healthz. Called with p.mu
// held or before p is shared.
func (p *Proc) start(ctx context.Context) error {
	// Our own pipe rather than exec's copying goroutine: nginx's workers
	// and the token watcher hold stderr too, and Wait must return when the
	// master exits, not when the last of them does.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("zonecache: %w", err)
	}
	logs := &tail{out: p.opts.Log}
	cmd := exec.Command("bash", append([]string{p.script}, p.opts.args()...)...)
	cmd.Env = append(os.Environ(), "NGINX="+p.nginx)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("zonecache: run start.sh: %w", err)
	}
	w.Close()
	logged := make(chan struct{})
	go func() {
		_, _ = io.Copy(logs, r)
		r.Close()
		close(logged)
	}()
	done := make(chan struct{})
	p.cmd, p.done, p.logs, p.logged = cmd, done, logs, logged
	go func() {
		p.err = cmd.Wait()
		close(done)
	}()
	if err := p.waitHealthy(ctx); err != nil {
		_ = p.kill()
		return err
	}
	return nil
}

// waitHealthy polls /healthz until it answers 200, nginx exits, or ctx ends.
func (p *Proc) waitHealthy(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := p.URL() + "/healthz"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			// Its last words may still be in the pipe; a start.sh that
			// failed early left nothing else holding it.
			select {
			case <-p.logged:
			case <-ctx.Done():
			}
			return fmt.Errorf("zonecache: start.sh exited (%v) before /healthz answered: %s", p.err, p.logs.last())
		case <-ctx.Done():
			return fmt.Errorf("zonecache: waiting for %s: %w; log: %s", url, ctx.Err(), p.logs.last())
		case <-tick.C:
		}
	}
}

// URL is the zone cache's base URL, "http://127.0.0.1:PORT".
func (p *Proc) URL() string { return "http://" + p.opts.Listen }

// Kill SIGKILLs nginx's whole process group, master and workers, and waits
// for the master: the zone cache killed halfway, its cache dir as it was.
func (p *Proc) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kill()
}

func (p *Proc) kill() error {
	if p.cmd == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	p.cmd = nil
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("zonecache: kill: %w", err)
	}
	return waitGroupGone(pgid)
}

// waitGroupGone waits until no live process is left in process group pgid.
// The workers are not our children, so there is nothing to wait(2) for:
// until they have exited they still hold the listening socket and cache
// files, and a Restart or the next test must not race them.
func waitGroupGone(pgid int) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	// SIGKILLed processes exit without running any code of theirs; the
	// bound only turns a kernel stuck on a dead disk into an error.
	deadline := time.Now().Add(time.Minute)
	for {
		alive, err := groupAlive(pgid)
		if err != nil || !alive {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zonecache: processes of group %d still alive a minute after SIGKILL", pgid)
		}
		<-tick.C
	}
}

// groupAlive says whether a process of group pgid is alive: not a zombie,
// which kill(2) would still find if nothing reaps the orphaned workers.
func groupAlive(pgid int) (bool, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false, fmt.Errorf("zonecache: %w", err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			return true, nil
		}
	}
	return false, nil
}

// Stop asks nginx to stop (SIGTERM: workers finish, master exits), waits,
// then sweeps the process group of anything left (the token watcher).
func (p *Proc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// nginx's fast shutdown closes every connection at once; a master
	// that has not exited a minute later is stuck, and is killed.
	stuck := time.NewTimer(time.Minute)
	defer stuck.Stop()
	select {
	case <-p.done:
	case <-stuck.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	p.cmd = nil
	if err := waitGroupGone(pid); err != nil {
		return err
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		return fmt.Errorf("zonecache: stop: %w", p.err)
	}
	if exit != nil && exit.ExitCode() != 0 {
		return fmt.Errorf("zonecache: nginx exited with %v: %s", p.err, p.logs.last())
	}
	return nil
}

// Restart starts the zone cache again, after Kill or Stop (or stopping it
// first), with the same options, port and cache dir: what was cached
// before is served again.
func (p *Proc) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		if err := p.kill(); err != nil {
			return err
		}
	}
	return p.start(ctx)
}

// Close stops the zone cache and removes the temp dir holding start.sh.
func (p *Proc) Close() error {
	err := p.Stop()
	os.RemoveAll(p.tmp)
	return err
}

// tail forwards a log and keeps its last lines for error messages.
type tail struct {
	out io.Writer
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	if t.out != nil {
		_, _ = t.out.Write(b)
	}
	t.mu.Lock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 8192 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4096:]...)
	}
	t.mu.Unlock()
	return len(b), nil
}

// last is the log's last few lines on one line.
func (t *tail) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	s := strings.Join(lines, " | ")
	if s == "" {
		return "(no output)"
	}
	return s
}
