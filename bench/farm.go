package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/zonecache"
)

// FarmConfig is `jitfs bench --farm`: many nodes of one zone reading the
// same job, each its own `jitfs mount` process with its own cache, with
// and without a zone cache (deploy/zone-cache) between them and the
// emulated WAN to the origin.
type FarmConfig struct {
	Link Link
	// Network is the WAN between the zone (its nodes and its zone cache)
	// and the origin.
	Network Network
	WorkDir string
	Log     *slog.Logger
	// Progress, when set, receives one line per finished row.
	Progress io.Writer
	// Nodes are the node counts measured (default 1, 2, 4, 8).
	Nodes []int
	// Modes are the ways of reaching the origin measured, among "gcs" (each
	// node directly) and "zone" (through the zone cache); default both.
	Modes []string
	Job   FarmJob
	// KillZone adds a row: the largest node count through the zone cache,
	// the zone cache killed once half of the bytes have been read.
	KillZone bool
	// Jitfs is the command that runs `jitfs ARGS`: each node's mount.
	Jitfs func(args ...string) *exec.Cmd
	// Speculate is the nodes' --speculate (default "none", so what
	// crosses the WAN is what the frames read and the ratio to the
	// distinct bytes measures the zone cache alone).
	Speculate string
	// ReadersPerNode are the files each node reads at once (a renderer's
	// loading threads; default 4).
	ReadersPerNode int
}

// FarmJob is the shape of the job every node renders: assets every frame
// reads, and files of each frame.
type FarmJob struct {
	// Shared maps a name under the job to its size.
	Shared map[string]int64 `json:"-"`
	// FrameFiles maps a name pattern with one %04d to each frame's size.
	FrameFiles map[string]int64 `json:"-"`
	// Frames are the frame numbers each node renders, in order.
	Frames []int `json:"frames"`
}

// DefaultFarmJob is a lighting job's frame: a scene, an environment map
// read in ranges, a dozen textures, small shader and colour files, and
// two caches per frame. Every node renders the same frames (render
// layers of one shot split across nodes read the same inputs), so
// without a zone cache each byte crosses the WAN once per node.
func DefaultFarmJob(scale float64) FarmJob {
	sz := func(n int64) int64 { return max(int64(float64(n)*scale), 4096) }
	j := FarmJob{Shared: map[string]int64{"scene/shot.usd": sz(4 << 20), "tex/env.exr": sz(24 << 20)},
		FrameFiles: map[string]int64{"cache/sim.%04d.vdb": sz(6 << 20), "cache/geo.%04d.abc": sz(2 << 20)}, Frames: []int{1001, 1002}}
	for i := 0; i < 12; i++ {
		j.Shared[fmt.Sprintf("tex/wall_%02d.tx", i)] = sz(2 << 20)
	}
	for i := 0; i < 32; i++ {
		j.Shared[fmt.Sprintf("lib/shader_%02d.osl", i)] = sz(64 << 10)
	}
	return j
}

// FarmReport is the farm's figures, measured in one run.
type FarmReport struct {
	Started   time.Time `json:"started"`
	RTT       float64   `json:"rtt_ms"`
	Bandwidth int64     `json:"bandwidth_bytes_per_s"`
	CPUs      int       `json:"cpus"`
	Job       FarmJob   `json:"job"`
	// DistinctBytes are the bytes of the files a node reads, each once.
	DistinctBytes int64     `json:"distinct_bytes"`
	Files         int       `json:"files_per_node"`
	Rows          []FarmRow `json:"rows"`
}

// FarmRow is one way of running the nodes.
type FarmRow struct {
	Mode  string `json:"mode"`
	Nodes int    `json:"nodes"`
	// FirstFrame* are the seconds from the start until a node had read
	// every file of its first frame: the median and the slowest node.
	FirstFrameMedian float64 `json:"first_frame_median_s"`
	FirstFrameMax    float64 `json:"first_frame_max_s"`
	// Total is the seconds until every node had read every frame.
	Total float64 `json:"total_s"`
	// OriginBytes are the object bytes the origin sent across the WAN
	// (media responses only); OriginRequests, its media requests;
	// MetaRequests, its listings and stats.
	OriginBytes    int64 `json:"origin_bytes"`
	OriginRequests int64 `json:"origin_media_requests"`
	MetaRequests   int64 `json:"origin_metadata_requests"`
	// ReadBytes are the bytes all nodes read; Verified, the files whose
	// bytes were checked against what was stored, on every node.
	ReadBytes int64 `json:"read_bytes"`
	Verified  int   `json:"files_verified"`
	// Failed counts reads that failed or returned wrong bytes; FirstError
	// is the first one's error.
	Failed     int    `json:"failed_reads"`
	FirstError string `json:"first_error,omitempty"`
	// ZoneKilled is when the zone cache was killed (seconds from the
	// start), for the row that kills it.
	ZoneKilled float64 `json:"zone_killed_s,omitempty"`
}

// OriginRatio is the origin's bytes over the distinct bytes read: 1 is
// every byte crossing the WAN once.
func (r FarmRow) OriginRatio(distinct int64) float64 {
	if distinct == 0 {
		return 0
	}
	return float64(r.OriginBytes) / float64(distinct)
}

// farmFile is one file a node reads, with what it must hold.
type farmFile struct {
	name string
	size int64
	crc  uint32
}

// farmCounter counts what the origin serves across the WAN.
type farmCounter struct {
	mediaBytes, media, meta atomic.Int64
}

func (c *farmCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMedia(r) {
			c.media.Add(1)
			w = &countingResponse{ResponseWriter: w, n: &c.mediaBytes}
		} else {
			c.meta.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// RunFarm measures the farm: for each mode and node count, fresh node
// caches and a fresh zone cache, every node reading the job's frames at
// once, bytes checked on every node.
func RunFarm(ctx context.Context, cfg FarmConfig) (*FarmReport, error) {
	if cfg.Network == nil || cfg.Jitfs == nil {
		return nil, errors.New("bench: the farm needs its network and the jitfs command")
	}
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = []int{1, 2, 4, 8}
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []string{"gcs", "zone"}
	}
	if cfg.Job.Shared == nil {
		cfg.Job = DefaultFarmJob(1)
	}
	if cfg.Speculate == "" {
		cfg.Speculate = "none"
	}
	if cfg.ReadersPerNode <= 0 {
		cfg.ReadersPerNode = 4
	}
	for _, m := range cfg.Modes {
		if m != "gcs" && m != "zone" {
			return nil, fmt.Errorf("bench: farm mode %q: want gcs or zone", m)
		}
	}
	if slices.Contains(cfg.Modes, "zone") || cfg.KillZone {
		if err := zonecache.Available(); err != nil {
			return nil, err
		}
	}
	count := &farmCounter{}
	emu, addr, stop, err := behindLink(emulator.Options{Bucket: Bucket, Wrap: count.wrap}, cfg.Network)
	if err != nil {
		return nil, err
	}
	defer stop()

	rep := &FarmReport{Started: time.Now().UTC(), RTT: float64(cfg.Link.RTT) / 1e6, Bandwidth: cfg.Link.Bandwidth,
		CPUs: runtime.NumCPU(), Job: cfg.Job}
	frames := farmFrames(cfg.Job, emu)
	seen := map[string]bool{}
	for _, fr := range frames {
		for _, f := range fr {
			if !seen[f.name] {
				seen[f.name] = true
				rep.DistinctBytes += f.size
			}
			rep.Files++
		}
	}
	type plan struct {
		mode  string
		nodes int
		kill  bool
	}
	var plans []plan
	for _, m := range cfg.Modes {
		for _, n := range cfg.Nodes {
			plans = append(plans, plan{m, n, false})
		}
	}
	if cfg.KillZone {
		plans = append(plans, plan{"zone", slices.Max(cfg.Nodes), true})
	}
	add := func(row FarmRow) {
		rep.Rows = append(rep.Rows, row)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "farm: %-22s %d nodes: first frame %.2f s (slowest %.2f s), all %.2f s, origin %.1f MiB (%.2f × distinct), %d failed\n",
				row.Mode, row.Nodes, row.FirstFrameMedian, row.FirstFrameMax, row.Total, float64(row.OriginBytes)/(1<<20),
				row.OriginRatio(rep.DistinctBytes), row.Failed)
		}
	}
	for i, p := range plans {
		dir := filepath.Join(cfg.WorkDir, fmt.Sprintf("row%d", i))
		err := func() error {
			defer os.RemoveAll(dir)
			var zone *zonecache.Proc
			if p.mode == "zone" {
				var err error
				zone, err = zonecache.Start(ctx, zonecache.Options{Origin: "http://" + addr, CacheDir: filepath.Join(dir, "zone"),
					MaxSize: 8 << 30, Allow: []string{"127.0.0.0/8"}})
				if err != nil {
					return fmt.Errorf("zone cache: %w", err)
				}
				defer zone.Close()
			}
			row, err := runFarmRow(ctx, cfg, addr, filepath.Join(dir, "cold"), p.mode, p.nodes, p.kill, zone, frames, count)
			if err != nil {
				return err
			}
			add(row)
			if p.mode != "zone" || p.kill {
				return nil
			}
			// The same nodes' successors, cold, with the zone cache warm:
			// what most nodes of a farm meet, once the first read the job.
			row, err = runFarmRow(ctx, cfg, addr, filepath.Join(dir, "warm"), "zone, warm", p.nodes, false, zone, frames, count)
			if err == nil {
				add(row)
			}
			return err
		}()
		if err != nil {
			return nil, fmt.Errorf("bench: farm, %s, %d nodes: %w", p.mode, p.nodes, err)
		}
	}
	return rep, nil
}

// farmFrames stores the job in the emulator and returns each frame's
// files in the order a renderer opens them: the scene, the shared assets,
// then the frame's caches.
func farmFrames(j FarmJob, emu *emulator.Server) [][]farmFile {
	put := func(name string, size int64) farmFile {
		name = "farm/" + name
		b := Content(name, size)
		emu.Put(Bucket, name, b)
		return farmFile{name: name, size: size, crc: crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))}
	}
	var shared []farmFile
	for _, n := range slices.Sorted(maps.Keys(j.Shared)) {
		shared = append(shared, put(n, j.Shared[n]))
	}
	var out [][]farmFile
	for _, f := range j.Frames {
		fr := slices.Clone(shared)
		for _, pat := range slices.Sorted(maps.Keys(j.FrameFiles)) {
			fr = append(fr, put(fmt.Sprintf(pat, f), j.FrameFiles[pat]))
		}
		out = append(out, fr)
	}
	return out
}

// runFarmRow runs nodes fresh `jitfs mount` processes, through zone when
// it is not nil, each reading every frame.
func runFarmRow(ctx context.Context, cfg FarmConfig, origin, dir, mode string, nodes int, kill bool, zone *zonecache.Proc,
	frames [][]farmFile, count *farmCounter) (FarmRow, error) {
	row := FarmRow{Mode: mode, Nodes: nodes}
	if kill {
		row.Mode = "zone, killed halfway"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row, err
	}
	var mounts []*peerMount
	defer func() {
		for _, m := range mounts {
			if err := m.close(); err != nil && cfg.Log != nil {
				cfg.Log.Warn("bench: farm node", "err", err)
			}
		}
	}()
	var mnts []string
	for k := 0; k < nodes; k++ {
		nd := filepath.Join(dir, "node"+strconv.Itoa(k))
		mnt, cache := filepath.Join(nd, "mnt"), filepath.Join(nd, "cache")
		for _, d := range []string{mnt, cache} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return row, err
			}
		}
		args := []string{"mount", "gs://" + Bucket + "/farm", mnt, "--cache-dir", cache, "--cache-size", "8GiB",
			"--endpoint", origin, "--socket", "none", "--speculate", cfg.Speculate, "--log-level", "warn"}
		if zone != nil {
			args = append(args, "--zone-cache", zone.URL())
		}
		m, err := startMount(ctx, cfg.Jitfs(args...), mnt)
		if err != nil {
			return row, fmt.Errorf("node %d: %w", k, err)
		}
		mounts = append(mounts, m)
		mnts = append(mnts, mnt)
	}
	var total int64
	for _, fr := range frames {
		for _, f := range fr {
			total += f.size
		}
	}
	total *= int64(nodes)
	media0, mediaBytes0, meta0 := count.media.Load(), count.mediaBytes.Load(), count.meta.Load()

	var (
		mu       sync.Mutex
		first    []float64
		read     atomic.Int64
		killOnce sync.Once
		wg       sync.WaitGroup
	)
	start := time.Now()
	fail := func(err error) {
		mu.Lock()
		row.Failed++
		if row.FirstError == "" {
			row.FirstError = err.Error()
		}
		mu.Unlock()
	}
	for _, mnt := range mnts {
		wg.Add(1)
		go func(mnt string) {
			defer wg.Done()
			for i, fr := range frames {
				files := make(chan farmFile)
				var fw sync.WaitGroup
				for r := 0; r < cfg.ReadersPerNode; r++ {
					fw.Add(1)
					go func() {
						defer fw.Done()
						for f := range files {
							n, err := readChecked(ctx, filepath.Join(mnt, f.name[len("farm/"):]), f)
							if err != nil {
								fail(err)
								continue
							}
							mu.Lock()
							row.Verified++
							row.ReadBytes += n
							mu.Unlock()
							if kill && read.Add(n) >= total/2 {
								killOnce.Do(func() {
									row.ZoneKilled = time.Since(start).Seconds()
									if err := zone.Kill(); err != nil {
										fail(fmt.Errorf("killing the zone cache: %w", err))
									}
								})
							}
						}
					}()
				}
				for _, f := range fr {
					files <- f
				}
				close(files)
				fw.Wait()
				if i == 0 {
					mu.Lock()
					first = append(first, time.Since(start).Seconds())
					mu.Unlock()
				}
			}
		}(mnt)
	}
	wg.Wait()
	row.Total = time.Since(start).Seconds()
	if ctx.Err() != nil {
		return row, ctx.Err()
	}
	sort.Float64s(first)
	row.FirstFrameMedian, row.FirstFrameMax = first[len(first)/2], first[len(first)-1]
	row.OriginRequests = count.media.Load() - media0
	row.OriginBytes = count.mediaBytes.Load() - mediaBytes0
	row.MetaRequests = count.meta.Load() - meta0
	return row, nil
}

// readChecked reads a file whole through a node's mount and checks its
// bytes against what was stored.
func readChecked(ctx context.Context, path string, f farmFile) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := io.Copy(h, fh)
	if err != nil {
		return n, fmt.Errorf("read %s: %w", path, err)
	}
	if n != f.size || h.Sum32() != f.crc {
		return n, fmt.Errorf("read %s: %d bytes with CRC32C %08x, want %d bytes with %08x", path, n, h.Sum32(), f.size, f.crc)
	}
	return n, nil
}

// Markdown writes the farm's figures as docs/farm.md shows them.
func (r *FarmReport) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Emulated WAN to the origin: %.0f ms RTT, %.0f MB/s; %d CPUs. Each node reads %d files, %.1f MiB distinct (frames %v).\n\n",
		r.RTT, float64(r.Bandwidth)/1e6, r.CPUs, r.Files, float64(r.DistinctBytes)/(1<<20), r.Job.Frames)
	fmt.Fprintln(w, "| origin reached | nodes | first frame, median | first frame, slowest | all frames | origin bytes | × distinct | media requests | metadata requests | failed reads |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, row := range r.Rows {
		mode := map[string]string{"gcs": "GCS directly", "zone": "zone cache, cold", "zone, warm": "zone cache, warm"}[row.Mode]
		if mode == "" {
			mode = row.Mode
		}
		fmt.Fprintf(w, "| %s | %d | %.2f s | %.2f s | %.2f s | %.1f MiB | %.2f | %d | %d | %d |\n", mode, row.Nodes,
			row.FirstFrameMedian, row.FirstFrameMax, row.Total, float64(row.OriginBytes)/(1<<20), row.OriginRatio(r.DistinctBytes),
			row.OriginRequests, row.MetaRequests, row.Failed)
	}
}
