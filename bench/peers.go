package bench

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// PeerNames are the other FUSE clients of GCS the bench can mount beside
// jitfs, in the order their rows appear.
var PeerNames = []string{"gcsfuse", "rclone"}

// NotInstalled is what the report says of a peer that is not on this
// machine: the bench never stands in for it.
const NotInstalled = "not installed (scripts/install-peers.sh installs it)"

// Peer is another FUSE client of GCS, measured in the same run, over the
// same link and bucket as jitfs, each workload on a fresh cache.
type Peer struct {
	Name string
	// Path is the peer's binary; empty when it is not installed.
	Path string
}

// FindPeers looks each named peer up: at the path given for it in paths
// when there is one (which must then be an executable), else on PATH. A
// peer found nowhere comes back with an empty Path, to be reported as not
// installed.
func FindPeers(names []string, paths map[string]string) ([]Peer, error) {
	var peers []Peer
	for _, n := range names {
		if !knownPeer(n) {
			return nil, fmt.Errorf("bench: unknown peer %q (known: %s)", n, strings.Join(PeerNames, ", "))
		}
		p := Peer{Name: n}
		if given := paths[n]; given != "" {
			path, err := exec.LookPath(given)
			if err != nil {
				return nil, fmt.Errorf("bench: %s at %s: %w", n, given, err)
			}
			p.Path = path
		} else if path, err := exec.LookPath(n); err == nil {
			p.Path = path
		}
		peers = append(peers, p)
	}
	return peers, nil
}

func knownPeer(n string) bool {
	for _, k := range PeerNames {
		if n == k {
			return true
		}
	}
	return false
}

// PeerInfo is what the report says of one peer: its version and how it
// was mounted, or why it has no rows.
type PeerInfo struct {
	Name    string `json:"name"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	// Flags are the mount's options, beside the endpoint, bucket, cache
	// directory and mountpoint, which vary.
	Flags   string `json:"flags,omitempty"`
	Missing string `json:"missing,omitempty"`
	// Errors holds one line per workload the peer failed on: the bench
	// goes on without its rows there.
	Errors []string `json:"errors,omitempty"`
}

func (p Peer) info() PeerInfo {
	if p.Path == "" {
		return PeerInfo{Name: p.Name, Missing: NotInstalled}
	}
	return PeerInfo{Name: p.Name, Path: p.Path, Version: peerVersion(p.Path),
		Flags: strings.Join(p.tuning(), " ")}
}

// peerVersion reads the module version a Go binary was built at, as `go
// install` leaves no other trace of it, and otherwise asks the binary.
func peerVersion(path string) string {
	if bi, err := buildinfo.ReadFile(path); err == nil && strings.HasPrefix(bi.Main.Version, "v") {
		return bi.Main.Version
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		if out, err = exec.CommandContext(ctx, path, "--version").Output(); err != nil {
			return ""
		}
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimPrefix(line, filepath.Base(path)+" ")
}

// tuning is how each peer is mounted, as a render farm would mount
// read-only scene data: its file cache on local disk, metadata cached for
// the life of the mount, and the parallel downloads its documentation
// recommends for large files.
func (p Peer) tuning() []string {
	switch p.Name {
	case "gcsfuse":
		return []string{"--implicit-dirs", "-o", "ro",
			"--file-cache-max-size-mb", "-1", "--file-cache-cache-file-for-range-read",
			"--file-cache-enable-parallel-downloads",
			"--metadata-cache-ttl-secs", "-1", "--stat-cache-max-size-mb", "-1", "--type-cache-max-size-mb", "-1",
			"--kernel-list-cache-ttl-secs", "-1"}
	case "rclone":
		return []string{"--read-only", "--vfs-cache-mode", "full", "--dir-cache-time", "1h", "--attr-timeout", "1h"}
	}
	return nil
}

// command mounts prefix of the bucket at mnt, served from the endpoint
// addr, caching in cache; the process stays in the foreground until the
// mount is unmounted.
func (p Peer) command(addr, prefix, cache, mnt string) *exec.Cmd {
	endpoint := "http://" + addr + "/storage/v1/"
	var args []string
	switch p.Name {
	case "gcsfuse":
		// The hierarchical namespace check speaks gRPC, which the
		// emulator does not serve; buckets without it skip the check.
		args = append([]string{"--foreground", "--anonymous-access", "--enable-hns=false",
			"--custom-endpoint", endpoint, "--only-dir", prefix, "--cache-dir", cache,
			"--log-format", "text", "--log-severity", "warning"}, p.tuning()...)
		args = append(args, Bucket, mnt)
	case "rclone":
		args = append([]string{"mount", ":gcs:" + Bucket + "/" + prefix, mnt,
			"--gcs-endpoint", endpoint, "--gcs-anonymous", "--cache-dir", cache}, p.tuning()...)
	}
	cmd := exec.Command(p.Path, args...)
	// A bench that dies must not leave a peer serving behind it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return cmd
}

// peerMount is a running peer.
type peerMount struct {
	mnt  string
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// mountPeer starts the peer and waits for its mount to appear in the mount
// table, or for the peer to exit, or for a minute.
func mountPeer(ctx context.Context, p Peer, addr, prefix, cache, mnt string) (*peerMount, error) {
	for _, d := range []string{cache, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return startMount(ctx, p.command(addr, prefix, cache, mnt), mnt)
}

// startMount starts a FUSE client's process and waits as mountPeer does.
func startMount(ctx context.Context, cmd *exec.Cmd, mnt string) (*peerMount, error) {
	m := &peerMount{mnt: mnt, cmd: cmd, log: &tailBuffer{max: 4 << 10}, done: make(chan struct{})}
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	limit := time.NewTimer(time.Minute)
	defer limit.Stop()
	for {
		if ok, err := mountinfo.Mounted(mnt); err != nil {
			m.close()
			return nil, err
		} else if ok {
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("exited before mounting (%v): %s", m.err, m.log.last())
		case <-ctx.Done():
			m.close()
			return nil, ctx.Err()
		case <-limit.C:
			m.close()
			return nil, fmt.Errorf("not mounted after a minute: %s", m.log.last())
		case <-tick.C:
		}
	}
}

// close unmounts, which ends the peer, and kills it if it lingers.
func (m *peerMount) close() error {
	err := unix.Unmount(m.mnt, 0)
	if err == unix.EBUSY {
		err = unix.Unmount(m.mnt, unix.MNT_DETACH)
	}
	if err == unix.EINVAL { // not (or no longer) mounted
		err = nil
	}
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
		if err == nil {
			err = fmt.Errorf("did not exit within 30 s of its unmount: %s", m.log.last())
		}
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", m.mnt, err)
	}
	return nil
}

// abort pulls the mount from under the peer and kills it.
func (m *peerMount) abort() {
	unix.Unmount(m.mnt, unix.MNT_DETACH)
	m.cmd.Process.Kill()
}

// runPeer measures one peer on one workload: a cold replay on a fresh
// cache, then a warm one on the same mount. Its link figures come from the
// link, which is all a peer can be measured by.
func runPeer(ctx context.Context, p Peer, addr, dir string, link *linkCounter, l Link, w *Workload) ([]Row, error) {
	base := filepath.Join(dir, p.Name)
	defer os.RemoveAll(base)
	m, err := mountPeer(ctx, p, addr, w.Name, filepath.Join(base, "cache"), filepath.Join(base, "mnt"))
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	var rows []Row
	for _, phase := range []string{"cold", "warm"} {
		before := link.counters()
		// A peer that stops answering would hold the replay in the kernel
		// for ever; pulling its mount fails the waiting calls instead, and
		// the bench goes on with the next one.
		limit := 10*time.Minute + time.Duration(100*l.Ideal(w.Needed)*float64(time.Second))
		var hung atomic.Bool
		watchdog := time.AfterFunc(limit, func() { hung.Store(true); m.abort() })
		res, err := play(ctx, w, m.mnt)
		watchdog.Stop()
		if hung.Load() {
			err = fmt.Errorf("no answer within %v, mount pulled (%v): %s", limit, err, m.log.last())
		}
		if err != nil {
			m.close()
			return rows, fmt.Errorf("%s replay: %w", phase, err)
		}
		// What the peer still fetches for this replay (a file cache
		// filling behind the reads) belongs to its row.
		link.settle(ctx, max(200*time.Millisecond, 5*l.RTT))
		r := rowFrom(p.Name+" "+phase, res)
		r.LinkBytes, r.Requests = link.since(before)
		rows = append(rows, r)
	}
	if err := m.close(); err != nil {
		return rows, err
	}
	return rows, nil
}

// tailBuffer keeps the end of a peer's output, for its error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// last is the peer's last few non-empty lines of output, on one line.
func (t *tailBuffer) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(bytes.TrimSpace(t.b)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	if len(lines) == 0 {
		return "no output"
	}
	return strings.Join(lines, " | ")
}

// linkCounter counts, at the emulator, the requests that came through the
// emulated link (those addressed to the link's address) and the object
// bytes it carried back, as jitfs's own counters count them: what a peer
// moved is known only there.
type linkCounter struct {
	host                           atomic.Pointer[string]
	requests, mediaBytes, inflight atomic.Int64
}

func (c *linkCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host := c.host.Load(); host == nil || r.Host != *host {
			h.ServeHTTP(w, r)
			return
		}
		c.inflight.Add(1)
		defer c.inflight.Add(-1)
		c.requests.Add(1)
		if isMedia(r) {
			w = &countingResponse{ResponseWriter: w, n: &c.mediaBytes}
		}
		h.ServeHTTP(w, r)
	})
}

// isMedia tells an object read: the JSON API's (alt=media, or the
// /download/ path of a mediaLink) and the XML API's (GET /BUCKET/OBJECT,
// which gcsfuse uses).
func isMedia(r *http.Request) bool {
	p := r.URL.Path
	if r.URL.Query().Get("alt") == "media" || strings.HasPrefix(p, "/download/") {
		return true
	}
	for _, api := range []string{"/storage/", "/upload/", "/batch/", "/_internal/"} {
		if strings.HasPrefix(p, api) {
			return false
		}
	}
	return r.Method == http.MethodGet && strings.Count(strings.Trim(p, "/"), "/") >= 1
}

func (c *linkCounter) counters() [2]int64 {
	return [2]int64{c.mediaBytes.Load(), c.requests.Load()}
}

func (c *linkCounter) since(before [2]int64) (bytes, reqs int64) {
	now := c.counters()
	return now[0] - before[0], now[1] - before[1]
}

// settle waits until the link has been idle (nothing in flight, no new
// request) for quiet, and at most two minutes.
func (c *linkCounter) settle(ctx context.Context, quiet time.Duration) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	limit := time.Now().Add(2 * time.Minute)
	last, idleSince := c.requests.Load(), time.Now()
	for time.Now().Before(limit) {
		if n := c.requests.Load(); n != last || c.inflight.Load() > 0 {
			last, idleSince = n, time.Now()
		} else if time.Since(idleSince) >= quiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// countingResponse counts body bytes on their way to the link.
type countingResponse struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingResponse) Write(b []byte) (int, error) {
	k, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(k))
	return k, err
}

func (c *countingResponse) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// publishVia makes the emulator hand out URLs on addr (a download's
// mediaLink, which rclone follows), so that no peer's request goes around
// the link, and serve the XML API (gcsfuse's reads) to requests addressed
// to addr.
func publishVia(emu, addr string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+emu+"/_internal/config",
		strings.NewReader(fmt.Sprintf(`{"externalUrl":"http://%s","publicHost":%q}`, addr, addr)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New("emulator: setting its public URL: " + resp.Status)
	}
	return nil
}
