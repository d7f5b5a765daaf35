package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/replay"
)

// Bucket is the emulator bucket the bench fills.
const Bucket = "jitfs-bench"

// Link describes the emulated WAN.
type Link struct {
	RTT       time.Duration
	Bandwidth int64 // bytes per second
}

// Network puts the emulated link between clients and the emulator at
// upstream; it returns the address clients dial instead.
type Network func(upstream string) (addr string, stop func() error, err error)

// behindLink starts the GCS emulator and puts the emulated link in front
// of it: clients dial addr. stop ends both, the link first.
func behindLink(o emulator.Options, network Network) (emu *emulator.Server, addr string, stop func(), err error) {
	emu, err = emulator.Start(o)
	if err != nil {
		return nil, "", nil, err
	}
	addr, stopLink, err := network(emu.Addr())
	if err != nil {
		emu.Stop()
		return nil, "", nil, fmt.Errorf("bench: emulated link: %w", err)
	}
	return emu, addr, func() { stopLink(); emu.Stop() }, nil
}

// Config is one bench run.
type Config struct {
	Workloads []*Workload
	Link      Link
	// Network builds the link. Required: a bench without the link it
	// claims to measure would report the wrong ratios.
	Network Network
	// WorkDir holds caches, mountpoints and pre-synced copies.
	WorkDir string
	// CopyParallelism is pre-sync's number of concurrent downloads (0:
	// PreSync's default).
	CopyParallelism int
	Log             *slog.Logger
	// Progress, when set, receives one line per finished row.
	Progress io.Writer
	// Speculate is the jitfs strategies' fetching ahead without hooks
	// (every kind when zero, as in the command); NoSpeculation turns it
	// off.
	Speculate     daemon.Speculation
	NoSpeculation bool
	// Peers are mounted after the jitfs strategies on every workload, a
	// cold and a warm row each; a peer without a Path is reported as not
	// installed.
	Peers []Peer
}

// Row is one workload under one strategy.
type Row struct {
	Workload string  `json:"workload"`
	Strategy string  `json:"strategy"`
	Total    float64 `json:"total_s"`
	// TTFB is the time to the first byte of scene data: for pre-sync, the
	// copy plus the replay's first byte.
	TTFB      float64 `json:"ttfb_s"`
	LinkBytes int64   `json:"link_bytes"`
	Requests  int64   `json:"gcs_requests"`
	// XIdeal is Total ÷ the link-limited ideal; XLocal is Total ÷ the same
	// replay on local disk.
	XIdeal float64 `json:"x_ideal"`
	XLocal float64 `json:"x_local"`
	Ops    int64   `json:"ops"`
	Read   int64   `json:"bytes_read"`
	ENOENT int64   `json:"enoent"`
	// CopyTime is pre-sync's copy phase.
	CopyTime float64 `json:"copy_s,omitempty"`
	// PrefetchFrom names the trace a prefetch row's manifest came from;
	// Waste is the share of its link bytes beyond what the same workload
	// moved cold without prefetch (fetched, never needed).
	PrefetchFrom string  `json:"prefetch_from,omitempty"`
	Waste        float64 `json:"waste,omitempty"`
	// XBestPeer is a jitfs row's Total ÷ the fastest peer's of the same
	// phase (cold rows against cold, warm and restarted against warm) on
	// the same workload in the same run; BestPeer names that peer.
	XBestPeer float64 `json:"x_best_peer,omitempty"`
	BestPeer  string  `json:"best_peer,omitempty"`
}

// WorkloadInfo describes a workload's shape.
type WorkloadInfo struct {
	Name   string  `json:"name"`
	Events int     `json:"events"`
	Files  int     `json:"files"`
	Bytes  int64   `json:"bytes"`
	Needed int64   `json:"needed_bytes"`
	Ideal  float64 `json:"ideal_s"`
	Local  float64 `json:"local_s"`
}

// Report is a whole run.
type Report struct {
	Started   time.Time      `json:"started"`
	RTT       float64        `json:"rtt_ms"`
	Bandwidth int64          `json:"bandwidth_bytes_per_s"`
	CPUs      int            `json:"cpus"`
	Workloads []WorkloadInfo `json:"workloads"`
	Rows      []Row          `json:"rows"`
	Peers     []PeerInfo     `json:"peers,omitempty"`
}

// Ideal is the link-limited time for a workload: its distinct bytes at the
// link's bandwidth plus one round trip.
func (l Link) Ideal(needed int64) float64 {
	t := l.RTT.Seconds()
	if l.Bandwidth > 0 {
		t += float64(needed) / float64(l.Bandwidth)
	}
	return t
}

// Run runs the matrix.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Network == nil {
		return nil, errors.New("bench: no network")
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("bench: no work directory")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	link := &linkCounter{}
	emu, addr, stop, err := behindLink(emulator.Options{Bucket: Bucket, Wrap: link.wrap}, cfg.Network)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := publishVia(emu.Addr(), addr); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	link.host.Store(&addr)

	rep := &Report{Started: time.Now().UTC(), RTT: float64(cfg.Link.RTT) / 1e6, Bandwidth: cfg.Link.Bandwidth, CPUs: runtime.NumCPU()}
	for _, p := range cfg.Peers {
		rep.Peers = append(rep.Peers, p.info())
	}
	for _, w := range cfg.Workloads {
		for name, size := range w.Files {
			emu.Put(Bucket, w.Name+"/"+name, Content(w.Name+"/"+name, size))
		}
		rows, info, err := runWorkload(ctx, cfg, addr, w)
		if err == nil {
			var peerRows []Row
			peerRows, err = runPeers(ctx, cfg, addr, link, w, info, rep.Peers)
			rows = append(rows, peerRows...)
			compareToPeers(rows)
		}
		if err != nil {
			return rep, fmt.Errorf("bench: workload %s: %w", w.Name, err)
		}
		rep.Workloads = append(rep.Workloads, info)
		rep.Rows = append(rep.Rows, rows...)
		// Free the emulator's copy: the next workload needs the memory.
		for name := range w.Files {
			emu.Backend().DeleteObject(Bucket, w.Name+"/"+name)
		}
	}
	return rep, nil
}

func runWorkload(ctx context.Context, cfg Config, addr string, w *Workload) ([]Row, WorkloadInfo, error) {
	info := WorkloadInfo{Name: w.Name, Events: len(w.Events), Files: len(w.Files), Bytes: w.Bytes(),
		Needed: w.Needed, Ideal: cfg.Link.Ideal(w.Needed)}
	dir := filepath.Join(cfg.WorkDir, w.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, info, err
	}
	defer os.RemoveAll(dir)
	var rows []Row
	emit := func(r Row) { rows = append(rows, cfg.finish(r, w, info)) }

	// Pre-sync: copy everything, then replay on local disk.
	local := filepath.Join(dir, "presync")
	ps, err := PreSync(ctx, Bucket, addr, w.Name+"/", local, cfg.CopyParallelism)
	if err != nil {
		return nil, info, err
	}
	res, err := play(ctx, w, local)
	if err != nil {
		return nil, info, fmt.Errorf("pre-sync replay: %w", err)
	}
	info.Local = res.Wall
	r := rowFrom("pre-sync", res)
	r.LinkBytes, r.Requests = ps.LinkBytes, ps.Requests
	r.CopyTime = ps.Copy.Seconds()
	r.Total += r.CopyTime
	r.TTFB += r.CopyTime
	emit(r)
	os.RemoveAll(local)

	// jitfs: cold, then warm on the same mount, then a new daemon on the
	// same cache.
	cacheDir := filepath.Join(dir, "cache")
	mnt := filepath.Join(dir, "mnt")
	m, err := mount(ctx, cfg, addr, w.Name, cacheDir, mnt)
	if err != nil {
		return nil, info, err
	}
	for _, strategy := range []string{"jitfs cold", "jitfs warm"} {
		before := m.counters()
		res, err := play(ctx, w, mnt)
		if err != nil {
			m.Close()
			return nil, info, fmt.Errorf("%s: %w", strategy, err)
		}
		m.settle(ctx)
		r := rowFrom(strategy, res)
		r.LinkBytes, r.Requests = m.since(before)
		emit(r)
	}
	if err := m.Close(); err != nil {
		return nil, info, err
	}
	m, err = mount(ctx, cfg, addr, w.Name, cacheDir, mnt)
	if err != nil {
		return nil, info, err
	}
	before := m.counters()
	res, err = play(ctx, w, mnt)
	if err != nil {
		m.Close()
		return nil, info, fmt.Errorf("jitfs restarted: %w", err)
	}
	m.settle(ctx)
	r = rowFrom("jitfs restarted", res)
	r.LinkBytes, r.Requests = m.since(before)
	emit(r)
	if err := m.Close(); err != nil {
		return nil, info, err
	}

	// Cold bytes, but what the mount learned of files opened together
	// kept (the cache directory's coopen/): a node whose cache was
	// evicted, or the same chain at new generations.
	if cfg.speculation().CoOpen {
		if err := emptyExceptLearned(cacheDir); err != nil {
			return nil, info, err
		}
		if m, err = mount(ctx, cfg, addr, w.Name, cacheDir, mnt); err != nil {
			return nil, info, err
		}
		res, err := play(ctx, w, mnt)
		if err != nil {
			m.Close()
			return nil, info, fmt.Errorf("jitfs cold, learned: %w", err)
		}
		m.settle(ctx)
		r := rowFrom("jitfs cold, learned", res)
		r.LinkBytes, r.Requests = m.since([2]int64{})
		emit(r)
		if err := m.Close(); err != nil {
			return nil, info, err
		}
	}

	// Cold again, but the prefetch engine gets the manifest first, as a
	// render agent's `jitfs prefetch` or a DCC hook would send it, and
	// the render starts at once without waiting for it.
	if len(w.Prefetch) > 0 {
		os.RemoveAll(cacheDir)
		if m, err = mount(ctx, cfg, addr, w.Name, cacheDir, mnt); err != nil {
			return nil, info, err
		}
		eng, err := prefetch.New(prefetch.Options{Resolver: m.FS, Cache: m.Cache, Source: m.GCS, Logger: cfg.Log})
		if err != nil {
			m.Close()
			return nil, info, err
		}
		start := time.Now()
		if _, err := eng.Prefetch(ctx, hooks.Prefetch{Job: hooks.Job{ID: "bench"}, Scope: hooks.ScopeJob, Wants: w.Prefetch}); err != nil {
			eng.Close()
			m.Close()
			return nil, info, err
		}
		res, err := play(ctx, w, mnt)
		if err != nil {
			eng.Close()
			m.Close()
			return nil, info, fmt.Errorf("jitfs cold + prefetch: %w", err)
		}
		m.settle(ctx)
		// The prefetch's share of the time counts from the request.
		lead := res.Wall
		res.Wall = time.Since(start).Seconds()
		res.TTFB += res.Wall - lead
		eng.Close()
		r := rowFrom("jitfs cold + prefetch", res)
		r.LinkBytes, r.Requests = m.since([2]int64{})
		r.PrefetchFrom = w.PrefetchFrom
		if cold := rows[1].LinkBytes; r.LinkBytes > cold && r.LinkBytes > 0 {
			r.Waste = float64(r.LinkBytes-cold) / float64(r.LinkBytes)
		}
		emit(r)
		if err := m.Close(); err != nil {
			return nil, info, err
		}
	}
	// The same cold read with speculation off, on a fresh cache: what
	// fetching ahead without hooks is worth, in the same run.
	if !cfg.NoSpeculation {
		os.RemoveAll(cacheDir)
		nocfg := cfg
		nocfg.NoSpeculation = true
		m, err := mount(ctx, nocfg, addr, w.Name, cacheDir, mnt)
		if err != nil {
			return nil, info, err
		}
		res, err := play(ctx, w, mnt)
		if err != nil {
			m.Close()
			return nil, info, fmt.Errorf("jitfs cold, no speculation: %w", err)
		}
		r := rowFrom("jitfs cold, no speculation", res)
		r.LinkBytes, r.Requests = m.since([2]int64{})
		emit(r)
		if err := m.Close(); err != nil {
			return nil, info, err
		}
	}
	return rows, info, nil
}

// finish names a row's workload, sets its ratios to the ideal and to local
// disk, and reports it on Progress.
func (cfg Config) finish(r Row, w *Workload, info WorkloadInfo) Row {
	r.Workload = w.Name
	r.XIdeal = r.Total / info.Ideal
	if info.Local > 0 {
		r.XLocal = r.Total / info.Local
	}
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "bench: %-28s %-16s %8.3f s  %9.1f MiB over the link\n", w.Name, r.Strategy, r.Total, float64(r.LinkBytes)/(1<<20))
	}
	return r
}

// runPeers measures every installed peer on w. A peer that fails is
// reported in its PeerInfo and the bench goes on; only the bench's own
// failures (its context ended) stop it.
func runPeers(ctx context.Context, cfg Config, addr string, link *linkCounter, w *Workload, info WorkloadInfo, infos []PeerInfo) ([]Row, error) {
	var rows []Row
	for i, p := range cfg.Peers {
		if p.Path == "" {
			continue
		}
		dir := filepath.Join(cfg.WorkDir, w.Name, "peers")
		got, err := runPeer(ctx, p, addr, dir, link, cfg.Link, w)
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		// The rows a failing peer finished (its cold replay, when the warm
		// one failed) stand.
		for _, r := range got {
			rows = append(rows, cfg.finish(r, w, info))
		}
		if err != nil {
			msg := fmt.Sprintf("%s on %s: %v", p.Name, w.Name, err)
			infos[i].Errors = append(infos[i].Errors, msg)
			cfg.Log.Warn("bench: peer failed", "peer", p.Name, "workload", w.Name, "err", err)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "bench: %s\n", msg)
			}
		}
	}
	return rows, nil
}

// phase is the cache state a row's replay starts from: "cold", "warm", or
// "" for pre-sync, which has no counterpart among the peers. A restarted
// daemon reads a warm cache.
func phase(strategy string) string {
	switch {
	case strategy == "pre-sync":
		return ""
	case strings.Contains(strategy, "cold"):
		return "cold"
	case strings.Contains(strategy, "warm"), strings.Contains(strategy, "restarted"):
		return "warm"
	}
	return ""
}

func isPeer(strategy string) bool {
	name, _, _ := strings.Cut(strategy, " ")
	return knownPeer(name)
}

// compareToPeers sets × best peer on one workload's jitfs rows.
func compareToPeers(rows []Row) {
	best := map[string]Row{}
	for _, r := range rows {
		if ph := phase(r.Strategy); isPeer(r.Strategy) && ph != "" && r.Total > 0 {
			if b, ok := best[ph]; !ok || r.Total < b.Total {
				best[ph] = r
			}
		}
	}
	for i, r := range rows {
		if !strings.HasPrefix(r.Strategy, "jitfs ") {
			continue
		}
		if b, ok := best[phase(r.Strategy)]; ok {
			rows[i].XBestPeer = r.Total / b.Total
			rows[i].BestPeer, _, _ = strings.Cut(b.Strategy, " ")
		}
	}
}

// settle waits for what the mount's speculator fetched ahead of the replay
// just run, so its bytes count in that replay's row.
func (m *mounted) settle(ctx context.Context) {
	if m.Spec != nil {
		m.Spec.Settle(ctx)
	}
}

func play(ctx context.Context, w *Workload, root string) (*replay.Result, error) {
	res, err := replay.Run(ctx, w.Header, w.Events, replay.Options{Root: root})
	if err != nil {
		return nil, err
	}
	return res, res.Err()
}

func rowFrom(strategy string, res *replay.Result) Row {
	return Row{Strategy: strategy, Total: res.Wall, TTFB: max(res.TTFB, 0), Ops: res.Ops, Read: res.Bytes, ENOENT: res.ENOENT}
}

// mounted is an in-process jitfs daemon (internal/daemon) without a hook
// API: the bench drives the prefetch engine itself, as the hook server
// would, so no socket is needed.
type mounted struct{ *daemon.Scene }

func mount(ctx context.Context, cfg Config, addr, prefix, cacheDir, mnt string) (*mounted, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	s, err := daemon.StartScene(ctx, daemon.SceneConfig{Bucket: Bucket, Prefix: prefix + "/", Mountpoint: mnt, Endpoint: addr,
		CacheDir: cacheDir, CacheSize: 64 << 30, Passthrough: true, Socket: "none", Log: cfg.Log,
		Speculate: cfg.speculation()})
	if err != nil {
		return nil, err
	}
	return &mounted{s}, nil
}

func (m *mounted) counters() [2]int64 {
	s := &m.GCS.Stats
	return [2]int64{s.BytesRead.Load(), s.Lists.Load() + s.Stats.Load() + s.Reads.Load()}
}

func (m *mounted) since(before [2]int64) (bytes, reqs int64) {
	now := m.counters()
	return now[0] - before[0], now[1] - before[1]
}

// Copied is what a pre-sync's copy moved and how long it took.
type Copied struct {
	Copy      time.Duration
	LinkBytes int64
	Requests  int64 // listings, stats and reads
}

// PreSync is the pre-sync strategy's copy phase, shared with `jitfs demo`
// so both price the whole show the same way: it copies every object under
// prefix in bucket, through the GCS endpoint addr (the emulated link), into
// dir with n concurrent downloads (16 when n <= 0, as many as `gcloud
// storage cp` and rclone use by default or more). A frame could start only
// once it returns.
func PreSync(ctx context.Context, bucket, addr, prefix, dir string, n int) (Copied, error) {
	if n <= 0 {
		n = 16
	}
	gc, err := gcs.New(ctx, gcs.Options{Bucket: bucket, Endpoint: addr})
	if err != nil {
		return Copied{}, err
	}
	defer gc.Close()
	t0 := time.Now()
	if err := copyPrefix(ctx, gc, prefix, dir, n); err != nil {
		return Copied{}, fmt.Errorf("pre-sync copy: %w", err)
	}
	s := &gc.Stats
	return Copied{Copy: time.Since(t0), LinkBytes: s.BytesRead.Load(), Requests: s.Lists.Load() + s.Stats.Load() + s.Reads.Load()}, nil
}

// copyPrefix downloads every object under prefix into dir with n
// concurrent ranged reads of at most 32 MiB: a sliced parallel copy, the
// strongest form of pre-sync.
func copyPrefix(ctx context.Context, gc *gcs.Client, prefix, dir string, n int) error {
	var objs []gcs.Attrs
	queue := []string{prefix}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tok := ""
		for {
			page, err := gc.ListPage(ctx, p, tok, 0)
			if err != nil {
				return err
			}
			objs = append(objs, page.Objects...)
			queue = append(queue, page.Prefixes...)
			if tok = page.Next; tok == "" {
				break
			}
		}
	}
	type part struct {
		f        *os.File
		name     string
		gen, off int64
		n        int64
	}
	const slice = 32 << 20
	parts := make(chan part)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, slice)
			for p := range parts {
				b := buf[:p.n]
				err := gc.ReadRange(cctx, p.name, p.gen, p.off, b)
				if err == nil {
					_, err = p.f.WriteAt(b, p.off)
				}
				if err != nil {
					select {
					case errc <- fmt.Errorf("%s: %w", p.name, err):
					default:
					}
					cancel()
				}
			}
		}()
	}
	var files []*os.File
	var err error
feed:
	for _, o := range objs {
		dst := filepath.Join(dir, filepath.FromSlash(o.Name[len(prefix):]))
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			break
		}
		var f *os.File
		if f, err = os.Create(dst); err != nil {
			break
		}
		files = append(files, f)
		if err = f.Truncate(o.Size); err != nil {
			break
		}
		for off := int64(0); off < o.Size; off += slice {
			select {
			case parts <- part{f: f, name: o.Name, gen: o.Generation, off: off, n: min(slice, o.Size-off)}:
			case <-cctx.Done():
				break feed
			}
		}
	}
	close(parts)
	wg.Wait()
	for _, f := range files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	select {
	case e := <-errc:
		return e
	default:
	}
	return err
}

// speculation is what the jitfs strategies fetch ahead with.
func (cfg Config) speculation() daemon.Speculation {
	switch {
	case cfg.NoSpeculation:
		return daemon.Speculation{}
	case !cfg.Speculate.Any():
		return daemon.Speculation{Siblings: true, Sequences: true, CoOpen: true, Metadata: true}
	}
	return cfg.Speculate
}

// emptyExceptLearned removes a cache directory's contents but for what
// co-open learning keeps there.
func emptyExceptLearned(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == "coopen" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
