//go:build !production

package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/scene"
)

func runEmulator(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("emulator")
	data := fl.String("data", "", "seed buckets from DIR/BUCKET/OBJECT files (default: the embedded sample scene in gs://jitfs-demo/show/)")
	addr := fl.String("addr", "127.0.0.1:4443", "listen address")
	versioning := fl.Bool("versioning", false, "keep old generations readable after overwrites")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	opts := emulator.Options{Addr: *addr, DataDir: *data, Versioning: *versioning}
	if *data == "" {
		opts.Bucket, opts.Prefix, opts.Objects = demoBucket, "show/", scene.FS()
	}
	emu, err := emulator.Start(opts)
	if err != nil {
		return err
	}
	defer emu.Stop()
	fmt.Fprintf(stdout, "jitfs emulator: serving the GCS API at http://%s\n  export STORAGE_EMULATOR_HOST=%s\n", emu.Addr(), emu.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
