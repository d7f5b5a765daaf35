package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/replay"
)

// SoakConfig is one soak: rounds of concurrent replays of real traces
// against a fresh cache and mount, cold, warm and after a restart.
type SoakConfig struct {
	Workloads []*Workload
	// Rounds is how many fresh caches the soak goes through.
	Rounds int
	// Replayers run at once in every phase (4 when 0). Each replays every
	// workload once per phase, starting at a different one, so several
	// replayers open the same files at once as a node's renders do.
	Replayers int
	// Network builds the link between the mounts and the emulator; the
	// open races a soak looks for need round trips in the fill path.
	Network Network
	// WorkDir holds the caches and mountpoints.
	WorkDir  string
	Log      *slog.Logger
	Progress io.Writer
}

// SoakPhases are the phases of a soak round, in order.
var SoakPhases = []string{"cold", "warm", "restarted"}

// SoakPhase counts one phase's replays over all rounds.
type SoakPhase struct {
	Replays int64 `json:"replays"`
	// Failed are replays with at least one failed operation.
	Failed int64 `json:"failed_replays"`
	Ops    int64 `json:"ops"`
	// FailedOps are operations that failed although they succeeded when
	// the trace was recorded.
	FailedOps int64 `json:"failed_ops"`
}

// SoakReport is what a soak found.
type SoakReport struct {
	Started   time.Time            `json:"started"`
	Rounds    int                  `json:"rounds"`
	Replayers int                  `json:"replayers"`
	Workloads []string             `json:"workloads"`
	Wall      float64              `json:"wall_s"`
	Phases    map[string]SoakPhase `json:"phases"`
	Replays   int64                `json:"replays"`
	Failed    int64                `json:"failed_replays"`
	Ops       int64                `json:"ops"`
	FailedOps int64                `json:"failed_ops"`
	// FirstErrors holds up to ten failures, with round and phase.
	FirstErrors []string `json:"first_errors,omitempty"`
}

// Err reports a soak with any failed operation.
func (r *SoakReport) Err() error {
	if r.FailedOps == 0 && r.Failed == 0 {
		return nil
	}
	return fmt.Errorf("soak: %d of %d operations failed in %d of %d replays; first: %v", r.FailedOps, r.Ops, r.Failed, r.Replays, r.FirstErrors)
}

// soakPrefix is the bucket prefix the soak's workloads live under; one
// mount serves them all, as a node's daemon serves every job.
const soakPrefix = "soak"

// Soak runs the soak. An error means the soak could not run (the
// emulator, a mount); failed replay operations are in the report.
func Soak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	if cfg.Network == nil {
		return nil, errors.New("bench: soak: no network")
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("bench: soak: no work directory")
	}
	if len(cfg.Workloads) == 0 || cfg.Rounds <= 0 {
		return nil, errors.New("bench: soak: no workloads or no rounds")
	}
	if cfg.Replayers <= 0 {
		cfg.Replayers = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	emu, err := emulator.Start(emulator.Options{Bucket: Bucket})
	if err != nil {
		return nil, err
	}
	defer emu.Stop()
	addr, stop, err := cfg.Network(emu.Addr())
	if err != nil {
		return nil, fmt.Errorf("bench: soak: emulated link: %w", err)
	}
	defer stop()
	rep := &SoakReport{Started: time.Now().UTC(), Rounds: cfg.Rounds, Replayers: cfg.Replayers, Phases: map[string]SoakPhase{}}
	for _, w := range cfg.Workloads {
		rep.Workloads = append(rep.Workloads, w.Name)
		for name, size := range w.Files {
			emu.Put(Bucket, soakPrefix+"/"+w.Name+"/"+name, Content(w.Name+"/"+name, size))
		}
	}
	start := time.Now()
	mcfg := Config{Log: cfg.Log}
	for round := 1; round <= cfg.Rounds; round++ {
		dir := filepath.Join(cfg.WorkDir, fmt.Sprintf("soak-%d", round))
		cacheDir, mnt := filepath.Join(dir, "cache"), filepath.Join(dir, "mnt")
		m, err := mount(ctx, mcfg, addr, soakPrefix, cacheDir, mnt)
		if err != nil {
			return rep, fmt.Errorf("bench: soak round %d: %w", round, err)
		}
		for _, phase := range SoakPhases {
			if phase == "restarted" {
				// A new daemon on the same cache, as after an upgrade or
				// a crash: the journal is reopened, the kernel's caches
				// of the old mount are gone.
				if err := m.Close(); err != nil {
					return rep, fmt.Errorf("bench: soak round %d: unmount: %w", round, err)
				}
				if m, err = mount(ctx, mcfg, addr, soakPrefix, cacheDir, mnt); err != nil {
					return rep, fmt.Errorf("bench: soak round %d: remount: %w", round, err)
				}
			}
			soakPhase(ctx, cfg, m, mnt, round, phase, rep)
			if err := ctx.Err(); err != nil {
				m.Close()
				return rep, err
			}
		}
		if err := m.Close(); err != nil {
			return rep, fmt.Errorf("bench: soak round %d: unmount: %w", round, err)
		}
		os.RemoveAll(dir)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "soak: round %d/%d: %d replays, %d failed operations so far\n", round, cfg.Rounds, rep.Replays, rep.FailedOps)
		}
	}
	rep.Wall = time.Since(start).Seconds()
	return rep, nil
}

// soakPhase runs every replayer through every workload once, all at once.
func soakPhase(ctx context.Context, cfg SoakConfig, m *mounted, mnt string, round int, phase string, rep *SoakReport) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := len(cfg.Workloads)
	for r := 0; r < cfg.Replayers; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				w := cfg.Workloads[(r+i)%n]
				res, err := replay.Run(ctx, w.Header, w.Events, replay.Options{Root: filepath.Join(mnt, w.Name)})
				mu.Lock()
				p := rep.Phases[phase]
				p.Replays++
				rep.Replays++
				var fail string
				switch {
				case err != nil:
					fail = err.Error()
					p.Failed++
					p.FailedOps++
					rep.Failed++
					rep.FailedOps++
				default:
					p.Ops += res.Ops
					rep.Ops += res.Ops
					if res.Errors > 0 {
						fail = res.Err().Error()
						p.Failed++
						p.FailedOps += res.Errors
						rep.Failed++
						rep.FailedOps += res.Errors
					}
				}
				rep.Phases[phase] = p
				if fail != "" && len(rep.FirstErrors) < 10 {
					rep.FirstErrors = append(rep.FirstErrors, fmt.Sprintf("round %d, %s, replayer %d, %s: %s", round, phase, r, w.Name, fail))
				}
				mu.Unlock()
			}
		}(r)
	}
	wg.Wait()
}
