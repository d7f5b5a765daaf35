package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/mountinfo"
)

// runUnmount is `jitfs unmount MOUNT...`: it ends jitfs mounts the way
// `fusermount3 -u` and `umount` do, refusing anything that is not a jitfs
// mount, so a typo cannot take down another filesystem. The daemon serving
// the mount sees it go and exits; an output area's outputs that were not
// durable yet stay staged and resume when it is started again (run
// `jitfs flush --wait` first to wait for them).
func runUnmount(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("unmount")
	lazy := fl.Bool("lazy", false, "detach the mount now even while files under it are open (MNT_DETACH); it ends when the last is closed")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: want one or more MOUNTs", errUsage)
	}
	// An empty argument (filepath.Abs("") is the current directory) was
	// refused before: cli.go refuses empty arguments for every command.
	var errs []error
	for _, p := range pos {
		if err := unmountOne(p, *lazy, stderr); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "jitfs: unmounted %s\n", p)
	}
	return errors.Join(errs...)
}

func unmountOne(p string, lazy bool, stderr io.Writer) error {
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	// The mount table names the mountpoint itself, not a link to it.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	typ, err := mountinfo.Type(abs)
	if err != nil {
		return fmt.Errorf("%s: reading the mount table: %w", p, err)
	}
	switch typ {
	case "fuse.jitfs":
	case "":
		return fmt.Errorf("%s is not a mount", p)
	default:
		return fmt.Errorf("%s is not a jitfs mount (it is %s); use umount", p, typ)
	}
	warnNotDurable(abs, p, stderr)
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	err = unix.Unmount(abs, flags)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%s is busy: files under it are open (close them, or use --lazy to detach it now)", p)
	case errors.Is(err, unix.EPERM):
		// Not root: a user's FUSE mount is ended through fusermount3,
		// which checks that the mount is the user's.
		args := []string{"-u", abs}
		if lazy {
			args = []string{"-u", "-z", abs}
		}
		if out, ferr := exec.Command("fusermount3", args...).CombinedOutput(); ferr != nil {
			return fmt.Errorf("%s: %v: %s", p, ferr, out)
		}
		return nil
	}
	return fmt.Errorf("%s: %w", p, err)
}

// warnNotDurable says, before an output area at mnt is unmounted, how many
// of its outputs are not durable yet: they are not lost, but they wait for
// the area to be served again. It asks the area's own socket, briefly; a
// scene mount, or a daemon that does not answer, gets no word.
func warnNotDurable(mnt, name string, stderr io.Writer) {
	cl := hooks.NewClient(hooks.DefaultSocket(mnt), 0)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// No durable events: only the counts are wanted.
	st, err := cl.StatusSince(ctx, math.MaxUint64)
	if err != nil || st.Outputs == nil || st.Outputs.NotDurableTotal == 0 {
		return
	}
	fmt.Fprintf(stderr, "jitfs unmount: %s: %d outputs not durable yet stay staged; they upload when the area is served again (jitfs flush --wait to wait first)\n",
		name, st.Outputs.NotDurableTotal)
}
