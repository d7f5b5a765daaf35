package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sys/unix"
)

// Kind is how an instrument is recorded.
type Kind string

// The instrument kinds: synchronous ones are recorded as things happen,
// observable ones read a Snapshot at collection time.
const (
	Counter           Kind = "counter"
	Histogram         Kind = "histogram"
	ObservableCounter Kind = "observable counter"
	ObservableGauge   Kind = "observable gauge"
)

// Def describes one instrument. Prometheus names follow from Name and
// Unit: dots become underscores, the unit is appended (By → _bytes,
// s → _seconds) and counters end in _total.
type Def struct {
	Name  string
	Unit  string
	Kind  Kind
	Attrs []string
	Desc  string
}

// The instrument names, for code that records them.
const (
	FUSEOperations      = "jitfs.fuse.operations"
	FUSEDuration        = "jitfs.fuse.duration"
	CacheRead           = "jitfs.cache.read"
	CacheReads          = "jitfs.cache.reads"
	CacheFetched        = "jitfs.cache.fetched"
	CacheEvictions      = "jitfs.cache.evictions"
	CacheEvicted        = "jitfs.cache.evicted"
	CacheUsage          = "jitfs.cache.usage"
	CacheMemory         = "jitfs.cache.memory"
	CacheBudget         = "jitfs.cache.budget"
	CachePinned         = "jitfs.cache.pinned"
	CacheIntegrity      = "jitfs.cache.integrity_failures"
	GCSRequests         = "jitfs.gcs.requests"
	GCSRetries          = "jitfs.gcs.retries"
	GCSReceived         = "jitfs.gcs.received"
	GCSFirstByte        = "jitfs.gcs.first_byte.duration"
	ZoneRequests        = "jitfs.zone.requests"
	ZoneReceived        = "jitfs.zone.received"
	PrefetchWasted      = "jitfs.prefetch.wasted"
	PrefetchQueue       = "jitfs.prefetch.queue.depth"
	PrefetchInFlight    = "jitfs.prefetch.in_flight"
	PrefetchWait        = "jitfs.prefetch.wait.duration"
	SpeculationFiles    = "jitfs.speculation.files"
	SpeculationBytes    = "jitfs.speculation"
	ListAhead           = "jitfs.speculation.listings"
	HookRequests        = "jitfs.hook.requests"
	OutputStaged        = "jitfs.output.staged"
	OutputUploaded      = "jitfs.output.uploaded"
	OutputDurable       = "jitfs.output.durable"
	OutputPending       = "jitfs.output.pending"
	OutputFailed        = "jitfs.output.failed"
	OutputUploadLatency = "jitfs.output.upload.duration"
	Errors              = "jitfs.errors"
	NodeSourceResident  = "jitfs.node.source.resident"
	NodeJobResident     = "jitfs.node.job.resident"
)

// Catalog is every instrument jitfs exports. docs/metrics.md lists it
// (TestCatalogDocumented keeps the two in step).
var Catalog = []Def{
	{FUSEOperations, "{operation}", Counter, []string{"op", "result"}, "FUSE operations served, by operation and result (ok, or the errno's name)"},
	{FUSEDuration, "s", Histogram, []string{"op"}, "time to serve a FUSE operation"},
	{CacheRead, "By", ObservableCounter, []string{"outcome"}, "bytes read through the mount, by whether the cache held them (hit), the cache disk refused them and they were held in memory (memory), or they waited on GCS (miss); passthrough reads bypass the daemon and are not counted"},
	{CacheReads, "{read}", ObservableCounter, []string{"outcome"}, "reads through the mount: hit (all bytes local), miss (none), partial"},
	{CacheFetched, "By", ObservableCounter, []string{"cause"}, "bytes fetched from GCS into the cache, by cause: read (a reader waited), readahead, prefetch (hooks), speculation (fetched ahead of readers that sent no hooks)"},
	{CacheEvictions, "{object}", ObservableCounter, nil, "objects evicted from the cache to stay within budget"},
	{CacheEvicted, "By", ObservableCounter, nil, "bytes evicted from the cache"},
	{CacheUsage, "By", ObservableGauge, nil, "bytes the cache holds on disk"},
	{CacheMemory, "By", ObservableGauge, nil, "fetched bytes held in memory because the cache disk refused them (full or failing), served from there; at most 256 MiB"},
	{CacheBudget, "By", ObservableGauge, nil, "the cache's byte budget (--cache-size)"},
	{CachePinned, "By", ObservableGauge, nil, "bytes pinned by running jobs"},
	{CacheIntegrity, "{failure}", ObservableCounter, []string{"kind"}, "integrity failures, by kind: checksum (a mismatch found before any byte was served), served_before_check (a large object failed its CRC32C once assembled, after some of its bytes were served; see docs/integrity.md), disk (a cache-disk write failed; the bytes were served from memory)"},
	{GCSRequests, "{request}", Counter, []string{"kind", "result"}, "GCS request attempts, by kind (stat, list, read, upload, delete, bucket) and result (ok, not_found, precondition_failed, transient, canceled, error)"},
	{GCSRetries, "{request}", ObservableCounter, nil, "GCS attempts retried after a transient error"},
	{GCSReceived, "By", ObservableCounter, nil, "object bytes received from GCS"},
	{GCSFirstByte, "s", Histogram, []string{"kind"}, "time from sending a GCS request to its first response byte"},
	{ZoneRequests, "{request}", Counter, []string{"result"}, "object reads offered to the zone cache (--zone-cache), by result: ok (it answered), error (it failed: down, slow, refused or wrong; read from GCS directly), not_found (read from GCS directly for the authoritative answer), bypassed (sent to GCS without asking: the zone cache was down or the object had failed its check), mismatch (an object failed its CRC32C check; bypassed from then on)"},
	{ZoneReceived, "By", Counter, nil, "object bytes received from the zone cache (not counted in jitfs.gcs.received)"},
	{PrefetchWasted, "By", ObservableCounter, nil, "prefetched bytes evicted before anyone read them"},
	{SpeculationFiles, "{file}", ObservableCounter, []string{"outcome"}, "files fetched ahead of readers that sent no hooks, by outcome: predicted (queued), used (then opened), wasted (passed by or never opened); every prediction ends used or wasted"},
	{SpeculationBytes, "By", ObservableCounter, []string{"outcome"}, "the sizes of those files, by the same outcomes"},
	{ListAhead, "{request}", ObservableCounter, []string{"outcome"}, "directory listings made ahead of use (--speculate metadata), by outcome: flat (flat listing pages sent), background (listings started ahead of a walker), saved (directory listings they made needless: each a round trip), wasted (delimiter listings sent that a flat listing made needless)"},
	{PrefetchQueue, "{file}", ObservableGauge, nil, "prefetch work waiting for a fetch slot"},
	{PrefetchInFlight, "{file}", ObservableGauge, nil, "prefetch fetches running"},
	{PrefetchWait, "s", Histogram, []string{"scope", "timed_out"}, "how long a hook request with wait_ms held its frame"},
	{HookRequests, "{request}", Counter, []string{"endpoint", "status"}, "hook API requests, by endpoint and HTTP status"},
	{OutputStaged, "By", ObservableGauge, nil, "output bytes staged on local disk and not yet durable in GCS"},
	{OutputUploaded, "By", ObservableCounter, nil, "output bytes uploaded and confirmed by GCS"},
	{OutputDurable, "{file}", ObservableCounter, nil, "output files made durable in GCS"},
	{OutputPending, "{file}", ObservableGauge, nil, "closed output files waiting for or in upload"},
	{OutputFailed, "{file}", ObservableGauge, nil, "output files whose upload failed permanently; their data stays staged"},
	{OutputUploadLatency, "s", Histogram, nil, "time from an output file's close to its being durable in GCS"},
	{NodeSourceResident, "By", ObservableGauge, []string{"source"}, "node daemon: bytes the cache holds under each source (gs://BUCKET/PREFIX/) a job on the node has read, kept after the jobs end; the 20 sources of the most bytes, the rest summed as source=\"other\""},
	{NodeJobResident, "By", ObservableGauge, []string{"job_id"}, "node daemon: bytes the cache holds of the generations each job on the node pinned (jobs reading one scene both count it); the 20 jobs of the most bytes, the rest summed as job_id=\"other\" (not job, the label Prometheus gives the scrape target)"},
	{Errors, "{error}", Counter, []string{"layer", "errno"}, "errors the mount's read-only FUSE operations returned to a reader, by errno (not ENOENT, a lookup's normal answer); layer is always fuse: output-area operations are not counted, and hook API failures show in jitfs.hook.requests by status"},
}

// Snapshot is the daemon's counters at one moment. Zero fields are
// reported as zero, except the output series, which only a daemon that
// sets Outputs reports.
type Snapshot struct {
	HitBytes, MissBytes                             int64
	Hits, Misses, Partials                          int64
	FetchedRead, FetchedReadAhead, FetchedPrefetch  int64
	FetchedSpeculation                              int64
	Evictions, EvictedBytes                         int64
	CacheUsed, CacheBudget, Pinned                  int64
	MemoryHitBytes, MemoryHeld                      int64
	ChecksumMismatches, DiskErrors, LateMismatches  int64
	GCSRetries, GCSBytes                            int64
	PrefetchWasted, PrefetchQueue, PrefetchInFlight int64
	// Spec* are speculation's files and bytes: predicted, used, wasted.
	SpecPredicted, SpecUsed, SpecWasted                int64
	SpecPredictedBytes, SpecUsedBytes, SpecWastedBytes int64
	// ListAhead* are listing ahead's requests: flat pages, background
	// listings, listings saved and listings wasted.
	ListAheadFlat, ListAheadBackground, ListAheadSaved, ListAheadWasted int64
	// Outputs is set by a daemon that serves an output area: only then
	// are the output series exported, so a scene mount has none.
	Outputs                                    bool
	OutputStaged, OutputUploaded               int64
	OutputDurable, OutputPending, OutputFailed int64
	// SourceResident and JobResident are the node daemon's bytes per
	// source and per job, already bounded in number.
	SourceResident, JobResident []Labeled
}

// Labeled is one value of a labelled series.
type Labeled struct {
	Label string
	Value int64
}

// Metrics holds jitfs's instruments. A nil *Metrics records nothing, so
// code can call it unconditionally.
type Metrics struct {
	fuseOps      metric.Int64Counter
	fuseDur      metric.Float64Histogram
	gcsFirstByte metric.Float64Histogram
	prefetchWait metric.Float64Histogram
	hookReqs     metric.Int64Counter
	gcsReqs      metric.Int64Counter
	zoneReqs     metric.Int64Counter
	zoneBytes    metric.Int64Counter
	uploadDur    metric.Float64Histogram
	errs         metric.Int64Counter
	reg          metric.Registration
	// attrs name the mount (or node) on every series, so the mounts of
	// one process are told apart; base is them alone, for the series
	// without attributes of their own.
	attrs []attribute.KeyValue
	base  metric.MeasurementOption
	// opts caches each series' attribute option: the sets are bounded
	// (operations, errnos, request kinds and results, endpoints and
	// statuses), and building one per record cost more than recording.
	opts sync.Map // setKey -> metric.MeasurementOption
}

// series names the instruments whose attribute options are cached.
type series uint8

const (
	seriesFUSEDur series = iota
	seriesFUSEOps
	seriesGCSFirstByte
	seriesGCSReqs
	seriesZoneReqs
	seriesPrefetchWait
	seriesHookReqs
	seriesErrors
)

// setKey is one series of one instrument: its attributes follow from it
// (setKey.attrs), so a cache hit builds nothing.
type setKey struct {
	s    series
	a, b string
	n    int64 // an errno, an HTTP status, or a bool as 0/1
}

// attrs are the key's own attributes.
func (k setKey) attrs() []attribute.KeyValue {
	switch k.s {
	case seriesFUSEDur:
		return []attribute.KeyValue{attribute.String("op", k.a)}
	case seriesFUSEOps:
		return []attribute.KeyValue{attribute.String("op", k.a), attribute.String("result", errnoName(syscall.Errno(k.n)))}
	case seriesGCSFirstByte:
		return []attribute.KeyValue{attribute.String("kind", k.a)}
	case seriesGCSReqs:
		return []attribute.KeyValue{attribute.String("kind", k.a), attribute.String("result", k.b)}
	case seriesZoneReqs:
		return []attribute.KeyValue{attribute.String("result", k.a)}
	case seriesPrefetchWait:
		return []attribute.KeyValue{attribute.String("scope", k.a), attribute.Bool("timed_out", k.n != 0)}
	case seriesHookReqs:
		return []attribute.KeyValue{attribute.String("endpoint", k.a), attribute.Int64("status", k.n)}
	case seriesErrors:
		return []attribute.KeyValue{attribute.String("layer", k.a), attribute.String("errno", errnoName(syscall.Errno(k.n)))}
	}
	return nil
}

// opt is k's attribute option, with the Metrics' own attributes.
func (m *Metrics) opt(k setKey) metric.MeasurementOption {
	if v, ok := m.opts.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	v, _ := m.opts.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(append(k.attrs(), m.attrs...)...)))
	return v.(metric.MeasurementOption)
}

// Latency buckets in seconds: FUSE hits are tens of microseconds, GCS
// first bytes tens of milliseconds, frame waits seconds.
var latencyBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// New creates the instruments on mp. Every series recorded or observed
// through the Metrics carries attrs as well: a process serving several
// mounts tells them apart by mountpoint. snap, if not nil, is called at
// each collection for the observable instruments; it must be cheap and
// safe from any goroutine.
func New(mp metric.MeterProvider, snap func() Snapshot, attrs ...attribute.KeyValue) (*Metrics, error) {
	m := mp.Meter("github.com/jitfs/jitfs")
	defs := map[string]Def{}
	for _, d := range Catalog {
		defs[d.Name] = d
	}
	var errs []error
	counter := func(name string) metric.Int64Counter {
		d := defs[name]
		c, err := m.Int64Counter(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Desc))
		errs = append(errs, err)
		return c
	}
	hist := func(name string) metric.Float64Histogram {
		d := defs[name]
		h, err := m.Float64Histogram(name, metric.WithUnit(d.Unit), metric.WithDescription(d.Desc),
			metric.WithExplicitBucketBoundaries(latencyBuckets...))
		errs = append(errs, err)
		return h
	}
	out := &Metrics{
		fuseOps:      counter(FUSEOperations),
		fuseDur:      hist(FUSEDuration),
		gcsFirstByte: hist(GCSFirstByte),
		prefetchWait: hist(PrefetchWait),
		hookReqs:     counter(HookRequests),
		gcsReqs:      counter(GCSRequests),
		zoneReqs:     counter(ZoneRequests),
		zoneBytes:    counter(ZoneReceived),
		uploadDur:    hist(OutputUploadLatency),
		errs:         counter(Errors),
		attrs:        attrs,
		base:         metric.WithAttributeSet(attribute.NewSet(attrs...)),
	}
	if snap != nil {
		obs := map[string]metric.Observable{}
		var list []metric.Observable
		for _, d := range Catalog {
			var o metric.Observable
			var err error
			switch d.Kind {
			case ObservableCounter:
				o, err = m.Int64ObservableCounter(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Desc))
			case ObservableGauge:
				o, err = m.Int64ObservableGauge(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Desc))
			default:
				continue
			}
			errs = append(errs, err)
			obs[d.Name] = o
			list = append(list, o)
		}
		reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			s := snap()
			put := func(name string, v int64, kv ...attribute.KeyValue) {
				o.ObserveInt64(obs[name].(metric.Int64Observable), v, metric.WithAttributes(append(kv, attrs...)...))
			}
			outcome := func(v string) attribute.KeyValue { return attribute.String("outcome", v) }
			put(CacheRead, s.HitBytes, outcome("hit"))
			put(CacheRead, s.MissBytes, outcome("miss"))
			put(CacheRead, s.MemoryHitBytes, outcome("memory"))
			put(CacheReads, s.Hits, outcome("hit"))
			put(CacheReads, s.Misses, outcome("miss"))
			put(CacheReads, s.Partials, outcome("partial"))
			cause := func(v string) attribute.KeyValue { return attribute.String("cause", v) }
			put(CacheFetched, s.FetchedRead, cause("read"))
			put(CacheFetched, s.FetchedReadAhead, cause("readahead"))
			put(CacheFetched, s.FetchedPrefetch, cause("prefetch"))
			put(CacheFetched, s.FetchedSpeculation, cause("speculation"))
			put(CacheEvictions, s.Evictions)
			put(CacheEvicted, s.EvictedBytes)
			put(CacheUsage, s.CacheUsed)
			put(CacheMemory, s.MemoryHeld)
			put(CacheBudget, s.CacheBudget)
			put(CachePinned, s.Pinned)
			put(CacheIntegrity, s.ChecksumMismatches, attribute.String("kind", "checksum"))
			put(CacheIntegrity, s.DiskErrors, attribute.String("kind", "disk"))
			put(CacheIntegrity, s.LateMismatches, attribute.String("kind", "served_before_check"))
			put(GCSRetries, s.GCSRetries)
			put(GCSReceived, s.GCSBytes)
			put(PrefetchWasted, s.PrefetchWasted)
			put(PrefetchQueue, s.PrefetchQueue)
			put(SpeculationFiles, s.SpecPredicted, outcome("predicted"))
			put(SpeculationFiles, s.SpecUsed, outcome("used"))
			put(SpeculationFiles, s.SpecWasted, outcome("wasted"))
			put(SpeculationBytes, s.SpecPredictedBytes, outcome("predicted"))
			put(SpeculationBytes, s.SpecUsedBytes, outcome("used"))
			put(SpeculationBytes, s.SpecWastedBytes, outcome("wasted"))
			put(ListAhead, s.ListAheadFlat, outcome("flat"))
			put(ListAhead, s.ListAheadBackground, outcome("background"))
			put(ListAhead, s.ListAheadSaved, outcome("saved"))
			put(ListAhead, s.ListAheadWasted, outcome("wasted"))
			put(PrefetchInFlight, s.PrefetchInFlight)
			if s.Outputs {
				put(OutputStaged, s.OutputStaged)
				put(OutputUploaded, s.OutputUploaded)
				put(OutputDurable, s.OutputDurable)
				put(OutputPending, s.OutputPending)
				put(OutputFailed, s.OutputFailed)
			}
			for _, l := range s.SourceResident {
				put(NodeSourceResident, l.Value, attribute.String("source", l.Label))
			}
			for _, l := range s.JobResident {
				put(NodeJobResident, l.Value, attribute.String("job_id", l.Label))
			}
			return nil
		}, list...)
		errs = append(errs, err)
		out.reg = reg
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: creating instruments: %w", err)
	}
	return out, nil
}

// Close unregisters the snapshot callback.
func (m *Metrics) Close() error {
	if m == nil || m.reg == nil {
		return nil
	}
	return m.reg.Unregister()
}

// FUSE records one FUSE operation that started at start.
func (m *Metrics) FUSE(ctx context.Context, op string, start time.Time, errno syscall.Errno) {
	if m == nil {
		return
	}
	m.fuseDur.Record(ctx, time.Since(start).Seconds(), m.opt(setKey{s: seriesFUSEDur, a: op}))
	m.fuseOps.Add(ctx, 1, m.opt(setKey{s: seriesFUSEOps, a: op, n: int64(errno)}))
	if errno != 0 && errno != syscall.ENOENT {
		// ENOENT is a lookup's normal answer, not an error a user sees as one.
		m.Error(ctx, "fuse", errno)
	}
}

// GCSFirstByte records the time to the first byte of a GCS response.
func (m *Metrics) GCSFirstByte(ctx context.Context, kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.gcsFirstByte.Record(ctx, d.Seconds(), m.opt(setKey{s: seriesGCSFirstByte, a: kind}))
}

// GCSRequest counts one GCS request attempt.
func (m *Metrics) GCSRequest(ctx context.Context, kind, result string) {
	if m == nil {
		return
	}
	m.gcsReqs.Add(ctx, 1, m.opt(setKey{s: seriesGCSReqs, a: kind, b: result}))
}

// ZoneRequest counts one read offered to the zone cache and the bytes it
// answered with.
func (m *Metrics) ZoneRequest(ctx context.Context, result string, bytes int64) {
	if m == nil {
		return
	}
	m.zoneReqs.Add(ctx, 1, m.opt(setKey{s: seriesZoneReqs, a: result}))
	if bytes > 0 {
		m.zoneBytes.Add(ctx, bytes, m.base)
	}
}

// PrefetchWaited records how long a hook request held its caller.
func (m *Metrics) PrefetchWaited(ctx context.Context, scope string, d time.Duration, timedOut bool) {
	if m == nil {
		return
	}
	k := setKey{s: seriesPrefetchWait, a: scope}
	if timedOut {
		k.n = 1
	}
	m.prefetchWait.Record(ctx, d.Seconds(), m.opt(k))
}

// HookRequest counts one hook API request.
func (m *Metrics) HookRequest(ctx context.Context, endpoint string, status int) {
	if m == nil {
		return
	}
	m.hookReqs.Add(ctx, 1, m.opt(setKey{s: seriesHookReqs, a: endpoint, n: int64(status)}))
}

// OutputDurableAfter records the time from an output's close to its being durable.
func (m *Metrics) OutputDurableAfter(ctx context.Context, d time.Duration) {
	if m == nil {
		return
	}
	m.uploadDur.Record(ctx, d.Seconds(), m.base)
}

// Error counts an error returned to a user. Only FUSE (layer "fuse")
// calls it today; the layer attribute stays so that another layer can
// count its errors without renaming the series.
func (m *Metrics) Error(ctx context.Context, layer string, errno syscall.Errno) {
	if m == nil {
		return
	}
	m.errs.Add(ctx, 1, m.opt(setKey{s: seriesErrors, a: layer, n: int64(errno)}))
}

// errnoName is "ok" or the errno's symbolic name (EIO, ENOENT, …): a
// bounded set, so it is safe as a metric attribute.
func errnoName(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno_" + fmt.Sprint(uint(e))
}

// PromName is the name under which Prometheus scrapes d: dots become
// underscores, the unit's Prometheus suffix is appended, and counters end
// in _total (the OpenTelemetry Prometheus exporter's default translation).
func PromName(d Def) string {
	n := strings.ReplaceAll(d.Name, ".", "_")
	switch d.Unit {
	case "By":
		n += "_bytes"
	case "s":
		n += "_seconds"
	}
	if d.Kind == Counter || d.Kind == ObservableCounter {
		n += "_total"
	}
	return n
}
