//go:build !production

package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/scene"
)

const demoBucket = "jitfs-demo"

func runDemo(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("demo")
	keep := fl.Bool("keep", false, "keep the temporary cache directory")
	logLevel := fl.String("log-level", "warn", "log level for the daemon's messages")
	if _, err := parseArgs(fl, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		return err
	}
	emu, err := emulator.Start(emulator.Options{Bucket: demoBucket, Prefix: "show/", Objects: scene.FS()})
	if err != nil {
		return err
	}
	defer emu.Stop()

	var presyncBytes int64
	var presyncObjects int
	err = fs.WalkDir(scene.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			presyncBytes += info.Size()
			presyncObjects++
		}
		return err
	})
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "jitfs-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(tmp)
	}
	mnt, cacheDir := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "cache")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	cfg := mountConfig{bucket: demoBucket, prefix: "show/", mountpoint: mnt, cacheDir: cacheDir,
		cacheSize: 1 << 30, endpoint: emu.Addr(), passthrough: true, log: log}

	fmt.Fprintf(stdout, "jitfs demo: GCS emulator at http://%s holds gs://%s/show/ (%d objects, %s)\n",
		emu.Addr(), demoBucket, presyncObjects, size(presyncBytes))
	fmt.Fprintf(stdout, "mounting at %s with cache %s\n\n", mnt, cacheDir)

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tfiles read\tabsent probes\tbytes read\tGCS data requests\tbytes over the link\ttime\t")
	type step struct {
		name    string
		frame   int
		restart bool
	}
	steps := []step{
		{"sh010 frame 1001, cold cache", 1001, false},
		{"sh010 frame 1002, shared deps warm", 1002, false},
		{"daemon restarted on the same cache", 0, true},
		{"sh010 frame 1001 after restart", 1001, false},
	}
	var total int64
	m, err := startMount(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer func() { m.Close() }()
	for _, s := range steps {
		if s.restart {
			if err := m.Close(); err != nil {
				return err
			}
			start := time.Now()
			if m, err = startMount(context.Background(), cfg); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t%s\t\n", s.name, time.Since(start).Round(time.Millisecond))
			continue
		}
		reads0, bytes0 := m.gcs.Stats.Reads.Load(), m.gcs.Stats.BytesRead.Load()
		start := time.Now()
		rep, err := renderFrame(mnt, "shots/sh010/sh010.scene", s.frame)
		if err != nil {
			return err
		}
		fetched := m.gcs.Stats.BytesRead.Load() - bytes0
		total += fetched
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t\n", s.name, rep.Files, rep.Probes, size(rep.BytesRead),
			m.gcs.Stats.Reads.Load()-reads0, size(fetched), time.Since(start).Round(time.Millisecond))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\njitfs fetched %s in all; a pre-sync of the show would have copied %s (%d objects) before the first frame: %.1f%% of it.\n",
		size(total), size(presyncBytes), presyncObjects, 100*float64(total)/float64(presyncBytes))
	return nil
}
