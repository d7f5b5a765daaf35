package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/faultproxy"
	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/jitfs/jitfs/internal/testworld"
)

// BenchmarkOutputUpload measures an output area end to end: renderer-like
// writers (temp file + rename) on a real mount served by `jitfs output`,
// uploading through the fault proxy to the in-process emulator. The
// proxy's aggregate upload cap stands in for the node's uplink (the
// internal/wan link shapes downloads only). Run it with:
//
//	go test -run XXX -bench BenchmarkOutputUpload -benchtime 1x ./cmd/jitfs
//
// "saturate" writes 48 frames of 4 MiB from 4 writers as fast as they go
// and reports throughput against the cap; "paced" writes one frame every
// 200 ms (below the cap, as a renderer does) and reports the time from
// each frame's close to its durable event.
func BenchmarkOutputUpload(b *testing.B) {
	for _, link := range []struct {
		name string
		rate int64
	}{{"link=50MB_s", 50e6}, {"link=uncapped", 0}} {
		b.Run(link.name+"/saturate", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchOutput(b, link.rate, 4, 48, 0)
			}
		})
		b.Run(link.name+"/paced", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchOutput(b, link.rate, 1, 20, 200*time.Millisecond)
			}
		})
	}
}

func benchOutput(b *testing.B, rate int64, writers, frames int, pace time.Duration) {
	b.Helper()
	emu, err := emulator.Start(emulator.Options{Bucket: testBucket})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Stop()
	emu.Put(testBucket, "seed", []byte("x"))
	proxy, err := faultproxy.Start(emu.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.Close()
	proxy.UploadRate.Store(rate)
	dir := b.TempDir()
	mnt := filepath.Join(dir, "out")
	os.MkdirAll(mnt, 0o755)
	cmd := testworld.Command(context.Background(), "output", "gs://"+testBucket+"/bench", mnt, "--staging-dir", filepath.Join(dir, "staging"),
		"--endpoint", proxy.Addr(), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		var sfs syscall.Statfs_t
		if ok, _ := mountinfo.Mounted(mnt); ok && syscall.Statfs(mnt, &sfs) == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			b.Fatal("mount did not appear")
		}
	}
	const size = 4 << 20
	b.SetBytes(int64(frames) * size)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for wr := 0; wr < writers; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := wr; i < frames; i += writers {
				if pace > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * pace)))
				}
				if err := writeFrame(mnt, fmt.Sprintf("f.%04d.exr", i), testworld.RandBytes(fmt.Sprint(i), size)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cl := hooks.NewClient(hooks.DefaultSocket(mnt), time.Minute)
	defer cl.Close()
	rep, err := flushOnce(context.Background(), cl, true, false)
	if err != nil || !rep.Durable {
		b.Fatalf("flush: %+v %v", rep, err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	st, err := cl.Status(context.Background())
	if err != nil || st.Outputs == nil {
		b.Fatalf("status: %v", err)
	}
	// Frames only: a temporary file uploaded before its rename (the
	// upload delay makes that rare) is counted in upload_requests/file.
	var lat []float64
	for _, ev := range st.Outputs.Durable {
		if strings.HasPrefix(filepath.Base(ev.Path), "f.") {
			lat = append(lat, (ev.DurableAt-ev.ClosedAt)*1000)
		}
	}
	if len(lat) != frames {
		b.Fatalf("%d durable frames, want %d", len(lat), frames)
	}
	sort.Float64s(lat)
	mbps := float64(frames*size) / elapsed.Seconds() / 1e6
	b.ReportMetric(mbps, "MB/s")
	if rate > 0 {
		b.ReportMetric(mbps/(float64(rate)/1e6), "of_cap")
	}
	b.ReportMetric(lat[len(lat)/2], "close_to_durable_p50_ms")
	b.ReportMetric(lat[min(len(lat)-1, len(lat)*99/100)], "close_to_durable_p99_ms")
	b.ReportMetric(float64(proxy.Uploads.Load())/float64(frames), "upload_requests/file")
}
