package wan

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envHostNS carries the host's network namespace identity into the child.
// Comparing it with the child's own namespace, rather than trusting a mere
// flag, keeps InNamespace honest if the variable leaks into a process that
// was never moved.
const envHostNS = "JITFS_WAN_HOSTNS"

// ErrNotRoot is returned when the process lacks the privileges to create a
// network namespace.
var ErrNotRoot = errors.New("wan: the emulated WAN needs root: it creates a network namespace and shapes its loopback with tc")

// forwarded are the signals the parent relays to the child, so that a job
// scheduler's or a user's kill reaches the process doing the work.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// netnsID identifies the calling process's network namespace
// ("net:[4026531840]").
func netnsID() (string, error) {
	return os.Readlink("/proc/self/ns/net")
}

// InNamespace reports whether the process runs in the private network
// namespace that Reexec created (or in one nested inside it).
func InNamespace() bool {
	host := os.Getenv(envHostNS)
	if host == "" {
		return false
	}
	cur, err := netnsID()
	return err == nil && cur != host
}

// Check reports why a capped link cannot be built here, without building
// anything: ErrNotRoot or ErrNoTC, or nil when Reexec and Start may be
// tried (they can still fail, say where namespaces are not allowed). A
// command that can do without the link calls it before Reexec, so that on
// a machine that lacks tc the program does not run twice for nothing.
func Check() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	_, err := findTC()
	return err
}

// Reexec moves the program into a private network namespace.
//
// Outside the namespace it runs the program again, with the same arguments
// (os.Args), environment, standard input, output and error, in a new network
// namespace; relays signals to it; and exits with its status (128+N if a
// signal N killed it). In that case Reexec does not return, and deferred
// functions do not run: call it first, before the program acquires anything,
// and expect everything before the call to run twice. It returns an error
// only if the child could not be started.
//
// Inside the namespace (in the child) it brings the loopback device up,
// since a new namespace starts with lo down, and returns nil.
func Reexec() error {
	if InNamespace() {
		return loopbackUp()
	}
	code, err := runChild()
	if err != nil {
		return err
	}
	os.Exit(code)
	return nil
}

// runChild starts the program in a new network namespace, relays signals
// to it and returns its exit status.
func runChild() (int, error) {
	if os.Geteuid() != 0 {
		return 0, ErrNotRoot
	}
	host, err := netnsID()
	if err != nil {
		return 0, fmt.Errorf("wan: reading own network namespace: %w", err)
	}
	// /proc/self/exe rather than os.Args[0]: it names this very binary even
	// when argv[0] is relative, looked up in PATH, or the file was replaced.
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(withoutEnv(os.Environ(), envHostNS), envHostNS+"="+host)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		// A parent killed with SIGKILL cannot relay it; without this the
		// child would go on running, holding its FUSE mounts.
		Pdeathsig: syscall.SIGKILL,
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	// Pdeathsig fires when the thread that forked the child exits, not the
	// process; pin this goroutine to its thread until the child is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return 0, fmt.Errorf("%w: %w", ErrNotRoot, err)
		}
		return 0, fmt.Errorf("wan: starting %s in a new network namespace: %w", os.Args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			if !terminalDelivered(s) {
				// The child may have exited already; nothing to do then.
				_ = cmd.Process.Signal(s)
			}
		case err := <-done:
			return exitStatus(err)
		}
	}
}

// terminalDelivered reports whether the terminal already sent s to the
// child. Ctrl-C and Ctrl-\ signal the whole foreground process group, which
// the child shares with the parent; relaying them too would deliver them
// twice, and a second SIGINT commonly means "quit now, skip the cleanup",
// which here would leave a FUSE mount behind.
func terminalDelivered(s os.Signal) bool {
	if s != syscall.SIGINT && s != syscall.SIGQUIT {
		return false
	}
	tty, err := os.Open("/dev/tty")
	if err != nil {
		return false // no controlling terminal: the signal came from kill
	}
	defer tty.Close()
	fg, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}

// exitStatus turns the child's wait result into the parent's exit code,
// with the shell's convention for a death by signal.
func exitStatus(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, fmt.Errorf("wan: waiting for the child: %w", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ee.ExitCode(), nil
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// loopbackUp sets IFF_UP on lo with an ioctl: a new namespace's lo is down,
// so nothing could listen on 127.0.0.1, and this spares a dependency on
// ip(8). Idempotent.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wan: bringing lo up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("wan: bringing lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("wan: bringing lo up: reading flags: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("wan: bringing lo up: %w", err)
	}
	return nil
}
