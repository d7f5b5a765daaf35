// Package bench runs `jitfs bench`: one matrix of workloads × strategies on
// this machine, side by side in one run, over an emulated WAN to a GCS
// emulator, so every claim about jitfs is a ratio measured against its
// alternatives under the same conditions.
//
// A workload is a trace: the real render traces checked into
// testdata/traces, and synthetic traces built here (one large sequential
// file; thousands of small files with one and with sixteen readers; random
// small reads in a large file). The bucket each workload needs is rebuilt
// from the trace alone — every file it touched, at the size it saw — so a
// studio's trace benchmarks without shipping the show's data.
//
// The strategies are the ways a render node gets its files:
//   - pre-sync: copy every object under the scene prefix to local disk,
//     then replay there (the copy time counts);
//   - jitfs cold: an empty cache;
//   - jitfs warm: the same mount again, as the next frame on a node sees it;
//   - jitfs restarted: a new daemon on the same cache directory;
//   - jitfs cold, learned: an empty cache but for what co-open learning
//     kept from the runs before (a node whose cache was evicted);
//   - gcsfuse and rclone mount (cold, then warm on the same mount), when
//     installed: the same bucket over the same link, each on a fresh cache.
//     What they move is counted at the emulator, on the requests that came
//     through the link, since they have no jitfs counters.
//
// Each row reports total time, time to first scene byte, bytes that
// crossed the link, GCS requests, and two ratios: to the link-limited
// ideal (bytes the workload needs ÷ bandwidth + one round trip) and to
// replaying the same workload on local disk; jitfs rows also one to the
// fastest peer of the same phase (cold or warm).
package bench
