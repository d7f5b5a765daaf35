package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/internal/mountinfo"
)

// checkMountpoint resolves the mountpoint and refuses a missing, non-
// directory or busy one. A dead FUSE mount left by a killed daemon is
// detached, so a restart needs no manual clean-up.
func checkMountpoint(dir string, log *slog.Logger) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if deadMount(abs) && os.Geteuid() == 0 {
		// A killed daemon's mount. Detaching it first would show readers
		// the bare directory (ENOENT: a renderer may take a texture for
		// optional and render a wrong frame) until the new mount is up.
		// Mount on top of it instead: until then they get ENOTCONN, and
		// the dead mount is detached when this daemon stops. Older dead
		// mounts stacked beneath it by earlier crashes go now.
		for deadMount(abs) {
			if n, _ := mountinfo.Count(abs); n <= 1 {
				break
			}
			if err := syscall.Unmount(abs, syscall.MNT_DETACH); err != nil {
				break
			}
		}
		if deadMount(abs) {
			log.Warn("mounting over a dead FUSE mount left by an earlier daemon; it is detached when this daemon stops", "mountpoint", abs)
			return abs, nil
		}
	}
	if deadMount(abs) {
		// Without root, fusermount cannot mount over it: detach it.
		log.Warn("detaching a dead FUSE mount left by an earlier daemon", "mountpoint", abs)
		if uerr := syscall.Unmount(abs, syscall.MNT_DETACH); uerr != nil {
			return "", fmt.Errorf("mountpoint %s holds a dead mount that cannot be detached: %w", abs, uerr)
		}
	}
	_, err = os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("mountpoint %s does not exist", abs)
		}
		return "", fmt.Errorf("mountpoint %s: %w", abs, err)
	}
	st, _ := os.Stat(abs)
	if !st.IsDir() {
		return "", fmt.Errorf("mountpoint %s is not a directory", abs)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil {
		abs = real
	}
	if busy, err := mountinfo.Mounted(abs); err == nil && busy {
		return "", fmt.Errorf("mountpoint %s is busy: something is already mounted there", abs)
	}
	return abs, nil
}

// hiddenFiles reports whether mountpoint dir holds files that a mount over
// it hides. Allowed, as mount(8) allows it, but a render reading the
// directory before or after the mount sees other files than during it (a
// leftover pre-sync copy is a classic cause): warnHidden says so once the
// mount is up, so a start that fails prints only its one error line.
func hiddenFiles(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

func warnHidden(hidden bool, dir string, log *slog.Logger) {
	if hidden {
		log.Warn("mounted over a non-empty directory: its files are hidden while jitfs serves it", "mountpoint", dir)
	}
}

// warnCacheSize logs when the cache's byte budget is more than the free
// space of the disk that holds dir plus what the cache holds already: the
// budget would never be reached and the disk would fill first (the cache
// then serves from memory and GCS, slower; nothing fails, but nothing is
// as configured).
func warnCacheSize(dir string, budget, held int64, log *slog.Logger) {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return
	}
	room := int64(sfs.Bavail)*int64(sfs.Bsize) + held
	if budget > room {
		log.Warn("the cache budget is larger than the space its disk has for it; the disk will fill before the budget does",
			"cache_dir", dir, "cache_size", budget, "room", room)
	}
}

// deadMount reports whether dir is a FUSE mount whose daemon is gone.
// statfs is never answered from the kernel's attribute cache, so it tells a
// live mount from the dead one a killed daemon leaves.
func deadMount(dir string) bool {
	var sfs syscall.Statfs_t
	err := syscall.Statfs(dir, &sfs)
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// detachDead detaches the dead mounts left at dir once this daemon's own
// mount is gone (see checkMountpoint), so a stopped daemon leaves a plain
// directory.
func detachDead(dir string, log *slog.Logger) {
	for deadMount(dir) {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			log.Warn("cannot detach a dead FUSE mount", "mountpoint", dir, "err", err)
			return
		}
	}
}

// unmount unmounts a FUSE server; open files make a plain unmount fail,
// and then the mount is detached so the daemon can exit. After a clean
// unmount it waits for requests already read from the device to finish
// (and be traced or journalled) before the caller closes what they use.
func unmount(srv *fuse.Server, mountpoint string, log *slog.Logger) error {
	if err := srv.Unmount(); err != nil {
		if mounted, merr := mountinfo.Mounted(mountpoint); merr == nil && !mounted {
			// Unmounted from outside (jitfs unmount, umount): nothing is
			// left to do, and the daemon stopped as asked.
			srv.Wait()
			return nil
		}
		log.Warn("unmount busy; detaching lazily", "mountpoint", mountpoint, "err", err)
		if err := syscall.Unmount(mountpoint, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", mountpoint, err)
		}
		detachDead(mountpoint, log)
		return nil
	}
	srv.Wait()
	detachDead(mountpoint, log)
	return nil
}

// orDiscard is log, or a logger that discards when there is none.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// closeOnce runs a Close once; later calls get its result again, so a
// caller's explicit Close and its deferred or cleanup Close do not clash.
type closeOnce struct {
	once sync.Once
	err  error
}

func (c *closeOnce) do(close func() error) error {
	c.once.Do(func() { c.err = close() })
	return c.err
}
