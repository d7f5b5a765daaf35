package wan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The test binary moves itself into a private network namespace, exactly as
// `jitfs bench` does, so the tests shape a loopback nobody else uses. A
// helper mode lets tests run the binary again to exercise Reexec itself.
const (
	helperEnv    = "WAN_TEST_HELPER"
	helperDirEnv = "WAN_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Getenv(helperDirEnv)))
	}
	if err := Reexec(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// helper is the program a Reexec test runs: Reexec first, as a command
// would, then one action in the child whose effects the test can check.
func helper(mode, dir string) int {
	err := Reexec()
	if mode == "notroot" {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, ErrNotRoot) {
			return 5
		}
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "exit":
		// Report the namespace, and whether lo is up, through a file the
		// host can read: the file system is shared, only the network is not.
		id, err := netnsID()
		if err != nil {
			return 1
		}
		lo := "lo-down"
		if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
			ln.Close()
			lo = "lo-up"
		}
		if err := os.WriteFile(filepath.Join(dir, "child"), []byte(id+"\n"+lo), 0o644); err != nil {
			return 1
		}
		return 7
	case "killself":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(10 * time.Second)
		return 1
	case "fuse":
		return serveFUSE(dir)
	case "signal":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
			return 1
		}
		select {
		case s := <-c:
			return 20 + int(s.(syscall.Signal))
		case <-time.After(20 * time.Second):
			return 1
		}
	}
	return 1
}

// serveFUSE mounts a one-file FUSE file system at dir/mnt from inside the
// child's namespace and serves it until SIGTERM: the host must be able to
// read it, since only the network namespace is private.
func serveFUSE(dir string) int {
	id, err := netnsID()
	if err != nil {
		return 1
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	root := &fs.Inode{}
	mnt := filepath.Join(dir, "mnt")
	srv, err := fs.Mount(mnt, root, &fs.Options{
		MountOptions: fuse.MountOptions{FsName: "wan-test", DirectMount: true},
		OnAdd: func(ctx context.Context) {
			f := root.NewPersistentInode(ctx, &fs.MemRegularFile{Data: []byte(id), Attr: fuse.Attr{Mode: 0o444}}, fs.StableAttr{})
			root.AddChild("netns", f, false)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		srv.Unmount()
		return 1
	}
	select {
	case <-c:
	case <-time.After(30 * time.Second):
	}
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
