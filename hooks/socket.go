package hooks

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvSocket names the environment variable through which hooks and the
// CLI find the daemon's socket when it is not the mount's default.
const EnvSocket = "JITFS_SOCKET"

// DefaultSocketDir holds the default sockets, one per mount.
const DefaultSocketDir = "/run/jitfs"

// maxSocketPath is the longest pathname a Unix socket can bind on Linux:
// sun_path is 108 bytes including the terminating NUL.
const maxSocketPath = 107

// ErrSocketInUse is wrapped when the socket path is served by a live
// process: a daemon already serves this mount, and its socket is not ours
// to take.
var ErrSocketInUse = errors.New("hooks: socket in use")

// ErrNoDaemon is wrapped by FindSocket when no socket serves a path.
var ErrNoDaemon = errors.New("hooks: no jitfs daemon socket found")

// DefaultSocket is the socket of the daemon serving mountpoint (which
// should be absolute; it is cleaned): DefaultSocketDir, then the
// mountpoint with "/" turned into "-" and every byte other than
// [A-Za-z0-9_.] (including "-" and a leading ".") escaped as %XX, then
// ".sock". So /mnt/jitfs is /run/jitfs/mnt-jitfs.sock and the name maps
// back to exactly one mountpoint. A name too long for sun_path keeps a
// readable prefix and ends in "~" and 16 hex digits of the mountpoint's
// SHA-256.
func DefaultSocket(mountpoint string) string {
	m := path.Clean("/" + mountpoint)
	esc := escapeMountpoint(m)
	p := DefaultSocketDir + "/" + esc + ".sock"
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(m))
	tail := "~" + hex.EncodeToString(sum[:8]) + ".sock"
	keep := maxSocketPath - len(DefaultSocketDir) - 1 - len(tail)
	return DefaultSocketDir + "/" + esc[:keep] + tail
}

func escapeMountpoint(m string) string {
	if m == "/" {
		return "-"
	}
	m = m[1:]
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// FindSocket returns the socket of the daemon serving the file or
// directory p: $JITFS_SOCKET when it is set, else the default socket of p
// or of its nearest ancestor that has one.
func FindSocket(p string) (string, error) {
	if s := os.Getenv(EnvSocket); s != "" {
		return s, nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return findSocket(abs, DefaultSocket)
}

func findSocket(abs string, socketOf func(string) string) (string, error) {
	for d := filepath.Clean(abs); ; d = filepath.Dir(d) {
		s := socketOf(d)
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return s, nil
		}
		if d == "/" {
			return "", fmt.Errorf("%w for %s (is it under a jitfs mount? set %s)", ErrNoDaemon, abs, EnvSocket)
		}
	}
}

// clearStale removes a socket file nobody answers on, the remains of a
// daemon that died without cleaning up. It never removes a socket that
// accepts connections, or anything that is not a socket.
func clearStale(p string, log *slog.Logger) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hooks: socket %s: %w", p, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("hooks: %s exists and is not a socket; refusing to replace it", p)
	}
	c, err := net.DialTimeout("unix", p, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s answers; another daemon serves this mount (stop it, or give this one another socket)", ErrSocketInUse, p)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Permission denied, a full backlog: someone may be there.
		return fmt.Errorf("hooks: cannot tell whether socket %s is live, leaving it: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hooks: remove stale socket %s: %w", p, err)
	}
	log.Info("hooks: removed a stale socket", "socket", p)
	return nil
}

// listenSocket binds the socket at p with mode 0660 and, when group is
// set, that group. It binds inside a fresh 0700 directory and only then
// links the socket into place, so no one can connect during the moment
// the socket has the umask's mode rather than 0660; a path too long for
// that falls back to binding in place.
func listenSocket(p, group string, log *slog.Logger) (*net.UnixListener, os.FileInfo, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, nil, err
		}
	}
	if len(p) > maxSocketPath {
		return nil, nil, fmt.Errorf("hooks: socket path %s is %d bytes, longer than the %d a Unix socket allows", p, len(p), maxSocketPath)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("hooks: socket directory: %w", err)
	}
	if err := clearStale(p, log); err != nil {
		return nil, nil, err
	}
	tmpDir, err := os.MkdirTemp(dir, ".jitfs-")
	if err != nil {
		return nil, nil, fmt.Errorf("hooks: socket directory: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	bindAt := filepath.Join(tmpDir, "s")
	if len(bindAt) > maxSocketPath {
		bindAt = p
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bindAt, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("hooks: listen on %s: %w", p, err)
	}
	// The server removes the socket itself, and only if it is still ours.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		ln.Close()
		os.Remove(bindAt)
		return nil, nil, err
	}
	if gid >= 0 {
		if err := os.Chown(bindAt, -1, gid); err != nil {
			return fail(fmt.Errorf("hooks: give socket %s to group %s: %w", p, group, err))
		}
	}
	if err := os.Chmod(bindAt, 0o660); err != nil {
		return fail(fmt.Errorf("hooks: chmod socket %s: %w", p, err))
	}
	if bindAt != p {
		// link, unlike rename, fails rather than replace a socket another
		// daemon bound since clearStale looked.
		if err := os.Link(bindAt, p); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fail(fmt.Errorf("%w: %s appeared while this daemon was starting", ErrSocketInUse, p))
			}
			if err := os.Rename(bindAt, p); err != nil {
				return fail(fmt.Errorf("hooks: move socket into place at %s: %w", p, err))
			}
		}
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return fail(fmt.Errorf("hooks: socket %s: %w", p, err))
	}
	return ln, fi, nil
}

// lookupGroup takes a group name or a numeric gid.
func lookupGroup(g string) (int, error) {
	if gid, err := strconv.Atoi(g); err == nil && gid >= 0 {
		return gid, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("hooks: socket group: %w", err)
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return 0, fmt.Errorf("hooks: socket group %s has gid %q", g, grp.Gid)
	}
	return gid, nil
}

// ListenSocket binds a Unix socket at p as the hook API does (mode 0660,
// group, a stale socket replaced, a live one refused), for other jitfs
// servers on the node: the node daemon's control socket. The caller
// removes p when it stops, if p is still the returned file.
func ListenSocket(p, group string, log *slog.Logger) (*net.UnixListener, os.FileInfo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return listenSocket(p, group, log)
}
