package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/metastore"
	"github.com/jitfs/jitfs/namespace"
)

// NodeConfig is `jitfs bench --node`: the node daemon's figures.
type NodeConfig struct {
	Link    Link
	Network Network
	WorkDir string
	Log     *slog.Logger
	// Progress, when set, receives one line per finished figure.
	Progress io.Writer
	// Workload is what each task reads.
	Workload *Workload
	// Tasks run at once through the daemon, and one after another
	// standalone (default 4).
	Tasks int
	// Jobs each list FilesPerJob files for the memory figure (default 10
	// and 10,000).
	Jobs, FilesPerJob int
	// RestartObjects are cached and listed before the restart figure
	// (default 100,000).
	RestartObjects int
}

// NodeReport is the node daemon's figures, measured in one run.
type NodeReport struct {
	Started   time.Time `json:"started"`
	RTT       float64   `json:"rtt_ms"`
	Bandwidth int64     `json:"bandwidth_bytes_per_s"`
	CPUs      int       `json:"cpus"`
	Workload  string    `json:"workload"`
	Tasks     int       `json:"tasks"`
	// Sequential is the tasks run one after another, each a standalone
	// `jitfs run` on the per-source cache directory; Concurrent, all at
	// once through one node daemon as tasks of one job.
	Sequential NodeRow `json:"sequential_standalone"`
	Concurrent NodeRow `json:"concurrent_node"`
	// OneTaskBytes is what the first standalone task (cold) moved: the
	// bytes the concurrent tasks are measured against.
	OneTaskBytes int64         `json:"one_task_link_bytes"`
	Memory       MemoryFigure  `json:"memory"`
	Restart      RestartFigure `json:"restart"`
}

// NodeRow is a way of running the tasks.
type NodeRow struct {
	Total     float64 `json:"total_s"`
	LinkBytes int64   `json:"link_bytes"`
	Requests  int64   `json:"gcs_requests"`
}

// MemoryFigure is the daemon's memory with many jobs' snapshots listed.
type MemoryFigure struct {
	Jobs  int `json:"jobs"`
	Files int `json:"files_per_job"`
	// RSSBytes is the bench process's resident set once every job has
	// listed every file: the node daemon, and the emulator's bucket too.
	RSSBytes      int64   `json:"rss_bytes"`
	BaselineRSS   int64   `json:"baseline_rss_bytes"`
	HeapBytes     int64   `json:"heap_inuse_bytes"`
	ListSeconds   float64 `json:"list_s"`
	ListRequests  int64   `json:"list_requests"`
	SharedListing int64   `json:"listings_shared"`
}

// RestartFigure is a node daemon restarted over a cache and metadata
// store holding many objects.
type RestartFigure struct {
	Objects int `json:"objects"`
	// StartSeconds is StartNode (cache scan, metadata check, jobs
	// restored, socket up); ServeSeconds, from the start to a task of the
	// restored job having attached and read a file.
	StartSeconds float64 `json:"start_s"`
	ServeSeconds float64 `json:"serve_s"`
	Lists        int64   `json:"list_requests"`
	Stats        int64   `json:"stat_requests"`
	Reads        int64   `json:"data_requests"`
	FillSeconds  float64 `json:"fill_s"`
}

// RunNode measures the node daemon. The emulator keeps its objects on disk
// (fake-gcs-server's memory backend slows down with every object added).
func RunNode(ctx context.Context, cfg NodeConfig) (*NodeReport, error) {
	if cfg.Network == nil || cfg.WorkDir == "" || cfg.Workload == nil {
		return nil, errors.New("bench: node: network, work directory and workload are required")
	}
	if cfg.Tasks <= 0 {
		cfg.Tasks = 4
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = 10
	}
	if cfg.FilesPerJob <= 0 {
		cfg.FilesPerJob = 10_000
	}
	if cfg.RestartObjects <= 0 {
		cfg.RestartObjects = 100_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "bench: node: "+format+"\n", args...)
		}
	}
	emu, addr, stop, err := behindLink(emulator.Options{Bucket: Bucket, StorageRoot: filepath.Join(cfg.WorkDir, "emulator")}, cfg.Network)
	if err != nil {
		return nil, err
	}
	defer stop()
	rep := &NodeReport{Started: time.Now().UTC(), RTT: float64(cfg.Link.RTT) / 1e6, Bandwidth: cfg.Link.Bandwidth,
		CPUs: runtime.NumCPU(), Workload: cfg.Workload.Name, Tasks: cfg.Tasks}
	w := cfg.Workload
	for name, size := range w.Files {
		emu.Put(Bucket, w.Name+"/"+name, Content(w.Name+"/"+name, size))
	}
	if err := nodeTasks(ctx, cfg, addr, rep); err != nil {
		return rep, err
	}
	progress("%d tasks: one after another standalone %.2f s, %s over the link; at once through the node %.2f s, %s",
		cfg.Tasks, rep.Sequential.Total, size(rep.Sequential.LinkBytes), rep.Concurrent.Total, size(rep.Concurrent.LinkBytes))
	if err := nodeMemory(ctx, cfg, emu, addr, rep); err != nil {
		return rep, err
	}
	progress("%d jobs x %d files listed: RSS %s (baseline %s)", cfg.Jobs, cfg.FilesPerJob, size(rep.Memory.RSSBytes), size(rep.Memory.BaselineRSS))
	if err := nodeRestart(ctx, cfg, addr, rep); err != nil {
		return rep, err
	}
	progress("restart with %d objects: started in %.3f s, served in %.3f s", cfg.RestartObjects, rep.Restart.StartSeconds, rep.Restart.ServeSeconds)
	return rep, nil
}

func startBenchNode(ctx context.Context, cfg NodeConfig, addr, dir string) (*daemon.Node, error) {
	return daemon.StartNode(ctx, daemon.NodeConfig{CacheDir: filepath.Join(dir, "cache"), CacheSize: 64 << 30,
		StagingDir: filepath.Join(dir, "staging"), Socket: filepath.Join(dir, "d.sock"), Endpoint: addr,
		Passthrough: true, OpTimeout: 2 * time.Minute, Log: cfg.Log, Speculate: Config{}.speculation()})
}

// attach attaches one task of job with the workload's prefix at mnt.
func attach(ctx context.Context, n *daemon.Node, job, prefix, mnt string) (*daemon.Attachment, error) {
	return daemon.NewNodeClient(n.Socket()).Attach(ctx, daemon.AttachRequest{Job: job, PID: os.Getpid(),
		Mounts: []daemon.Source{{Bucket: Bucket, Prefix: prefix + "/", Dir: mnt}}})
}

// nodeTasks: the tasks one after another standalone (each its own daemon
// on the per-source cache, as `jitfs run` without a node daemon), then
// all at once through one node daemon on a fresh cache.
func nodeTasks(ctx context.Context, cfg NodeConfig, addr string, rep *NodeReport) error {
	w := cfg.Workload
	dir := filepath.Join(cfg.WorkDir, "tasks")
	defer os.RemoveAll(dir)
	start := time.Now()
	for i := range cfg.Tasks {
		mnt := filepath.Join(dir, "seq", strconv.Itoa(i))
		m, err := mount(ctx, Config{Log: cfg.Log}, addr, w.Name, filepath.Join(dir, "seq-cache"), mnt)
		if err != nil {
			return err
		}
		_, err = play(ctx, w, mnt)
		b, r := m.since([2]int64{})
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("standalone task %d: %w", i, err)
		}
		if i == 0 {
			rep.OneTaskBytes = b
		}
		rep.Sequential.LinkBytes += b
		rep.Sequential.Requests += r
	}
	rep.Sequential.Total = time.Since(start).Seconds()

	n, err := startBenchNode(ctx, cfg, addr, filepath.Join(dir, "node"))
	if err != nil {
		return err
	}
	defer n.Close()
	start = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, cfg.Tasks)
	for i := range cfg.Tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mnt := filepath.Join(dir, "node-task", strconv.Itoa(i))
			a, err := attach(ctx, n, "bench", w.Name, mnt)
			if err != nil {
				errs[i] = err
				return
			}
			defer a.Detach(context.Background())
			_, errs[i] = play(ctx, w, mnt)
		}()
	}
	wg.Wait()
	rep.Concurrent.Total = time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tasks through the node: %w", err)
	}
	b, l, s, r := n.GCSCounters()
	rep.Concurrent.LinkBytes, rep.Concurrent.Requests = b, l+s+r
	return n.Close()
}

// nodeMemory: jobs each listing the same files in their own snapshot.
func nodeMemory(ctx context.Context, cfg NodeConfig, emu *emulator.Server, addr string, rep *NodeReport) error {
	const perDir = 1000
	for i := range cfg.FilesPerJob {
		emu.Put(Bucket, fmt.Sprintf("memory/d%03d/f%06d.exr", i/perDir, i), []byte("x"))
	}
	dir := filepath.Join(cfg.WorkDir, "memory")
	defer os.RemoveAll(dir)
	runtime.GC()
	rep.Memory = MemoryFigure{Jobs: cfg.Jobs, Files: cfg.FilesPerJob, BaselineRSS: rss()}
	n, err := startBenchNode(ctx, cfg, addr, dir)
	if err != nil {
		return err
	}
	defer n.Close()
	start := time.Now()
	var atts []*daemon.Attachment
	defer func() {
		for _, a := range atts {
			a.Detach(context.Background())
		}
	}()
	for j := range cfg.Jobs {
		mnt := filepath.Join(dir, "job", strconv.Itoa(j))
		a, err := attach(ctx, n, "memory-"+strconv.Itoa(j), "memory", mnt)
		if err != nil {
			return err
		}
		atts = append(atts, a)
		// Every job lists every directory through its own mount.
		top, err := os.ReadDir(mnt)
		if err != nil {
			return err
		}
		files := 0
		for _, d := range top {
			ents, err := os.ReadDir(filepath.Join(mnt, d.Name()))
			if err != nil {
				return err
			}
			files += len(ents)
		}
		if files != cfg.FilesPerJob {
			return fmt.Errorf("job %d listed %d files, want %d", j, files, cfg.FilesPerJob)
		}
	}
	rep.Memory.ListSeconds = time.Since(start).Seconds()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.Memory.HeapBytes = int64(ms.HeapInuse)
	rep.Memory.RSSBytes = rss()
	_, rep.Memory.ListRequests, _, _ = n.GCSCounters()
	rep.Memory.SharedListing = n.Status().ListingsShared
	return nil
}

// rss is this process's resident set size (VmRSS), 0 if unknown.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// localSource serves the restart figure's objects from memory: the cache
// is filled directly, since putting 100,000 objects into fake-gcs-server
// alone takes minutes.
type localSource struct{}

func (localSource) ReadRange(_ context.Context, name string, _, off int64, p []byte) error {
	b := Content(name, restartObjectSize)
	copy(p, b[off:])
	return nil
}

const restartObjectSize = 1024

// nodeRestart fills a cache and metadata store as a node daemon would
// have left them after a job listed and read RestartObjects files, then
// times a daemon starting on them until a task of that job has read one.
func nodeRestart(ctx context.Context, cfg NodeConfig, addr string, rep *NodeReport) error {
	const perDir = 1000
	const job = "restart"
	dir := filepath.Join(cfg.WorkDir, "restart")
	defer os.RemoveAll(dir)
	cacheDir := filepath.Join(dir, "cache")
	fill := time.Now()
	c, err := cache.New(cache.Options{Dir: cacheDir, Budget: 64 << 30, Logger: cfg.Log})
	if err != nil {
		return err
	}
	st, err := metastore.Open(metastore.Options{Path: filepath.Join(cacheDir, "meta.db"), Logger: cfg.Log})
	if err != nil {
		c.Close()
		return err
	}
	started := time.Now()
	if err := st.PutJob(metastore.Job{ID: job, Started: started, Detached: started}); err != nil {
		return err
	}
	store := st.Listings(job, Bucket+"/restart/")
	dirs := (cfg.RestartObjects + perDir - 1) / perDir
	root := namespace.Listing{ListedAt: started}
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	var fillErr error
	var mu sync.Mutex
	for d := range dirs {
		name := fmt.Sprintf("d%03d", d)
		root.Dirs = append(root.Dirs, name)
		l := namespace.Listing{ListedAt: started}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := d * perDir; i < min((d+1)*perDir, cfg.RestartObjects); i++ {
			obj := fmt.Sprintf("restart/%s/f%06d.exr", name, i)
			sum := crc32.Checksum(Content(obj, restartObjectSize), castagnoli)
			l.Files = append(l.Files, gcs.Attrs{Name: obj, Size: restartObjectSize, Generation: int64(i + 1), CRC32C: sum, HasCRC32C: true, Updated: started})
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				h, err := c.Open(cache.Meta{Bucket: Bucket, Name: obj, Gen: int64(i + 1), Size: restartObjectSize, CRC32C: sum, HasCRC32C: true}, localSource{})
				if err == nil {
					_, err = h.Fetch(ctx, 0, restartObjectSize)
					h.Close()
				}
				if err != nil {
					mu.Lock()
					fillErr = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		store.SaveDir(name, l)
	}
	store.SaveDir("", root)
	if err := errors.Join(fillErr, st.Flush(), st.Close(), c.Close()); err != nil {
		return fmt.Errorf("fill the restart cache: %w", err)
	}
	rep.Restart = RestartFigure{Objects: cfg.RestartObjects, FillSeconds: time.Since(fill).Seconds()}

	// The daemon starts from a cold page cache as after a reboot would not
	// be measurable without root's drop_caches; what it reads is small.
	start := time.Now()
	n, err := startBenchNode(ctx, cfg, addr, dir)
	if err != nil {
		return err
	}
	defer n.Close()
	rep.Restart.StartSeconds = time.Since(start).Seconds()
	mnt := filepath.Join(dir, "task")
	a, err := attach(ctx, n, job, "restart", mnt)
	if err != nil {
		return err
	}
	last := cfg.RestartObjects - 1
	rel := fmt.Sprintf("d%03d/f%06d.exr", last/perDir, last)
	got, err := os.ReadFile(filepath.Join(mnt, rel))
	rep.Restart.ServeSeconds = time.Since(start).Seconds()
	a.Detach(context.Background())
	if err != nil {
		return fmt.Errorf("read after the restart: %w", err)
	}
	if string(got) != string(Content("restart/"+rel, restartObjectSize)) {
		return errors.New("read after the restart: wrong bytes")
	}
	_, rep.Restart.Lists, rep.Restart.Stats, rep.Restart.Reads = n.GCSCounters()
	return n.Close()
}
