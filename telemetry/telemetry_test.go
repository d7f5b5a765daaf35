package telemetry

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// sum finds the int64 sum point of name whose attributes include kv.
func sum(t *testing.T, rm metricdata.ResourceMetrics, name string, kv ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var pts []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				pts = d.DataPoints
			case metricdata.Gauge[int64]:
				pts = d.DataPoints
			default:
				t.Fatalf("%s is %T", name, m.Data)
			}
		next:
			for _, p := range pts {
				for _, want := range kv {
					if v, ok := p.Attributes.Value(want.Key); !ok || v != want.Value {
						continue next
					}
				}
				return p.Value, true
			}
		}
	}
	return 0, false
}

func TestSnapshotIsObservedAtCollection(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	defer mp.Shutdown(context.Background())
	s := Snapshot{HitBytes: 4096, MissBytes: 100, Hits: 3, FetchedPrefetch: 7, CacheUsed: 10, CacheBudget: 20, GCSBytes: 5}
	m, err := New(mp, func() Snapshot { return s })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var rm metricdata.ResourceMetrics
	collect := func() {
		if err := r.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
	}
	collect()
	for _, c := range []struct {
		name string
		kv   []attribute.KeyValue
		want int64
	}{
		{CacheRead, []attribute.KeyValue{attribute.String("outcome", "hit")}, 4096},
		{CacheRead, []attribute.KeyValue{attribute.String("outcome", "miss")}, 100},
		{CacheReads, []attribute.KeyValue{attribute.String("outcome", "hit")}, 3},
		{CacheFetched, []attribute.KeyValue{attribute.String("cause", "prefetch")}, 7},
		{CacheUsage, nil, 10},
		{CacheBudget, nil, 20},
		{GCSReceived, nil, 5},
	} {
		if got, ok := sum(t, rm, c.name, c.kv...); !ok || got != c.want {
			t.Errorf("%s%v = %d (found %v), want %d", c.name, c.kv, got, ok, c.want)
		}
	}
	// The counters are read at collection, not copied at creation.
	s.HitBytes = 8192
	collect()
	if got, _ := sum(t, rm, CacheRead, attribute.String("outcome", "hit")); got != 8192 {
		t.Errorf("after the snapshot moved: %d, want 8192", got)
	}
	m.FUSE(context.Background(), "read", time.Now(), 0)
	m.FUSE(context.Background(), "lookup", time.Now(), syscall.ENOENT)
	m.FUSE(context.Background(), "open", time.Now(), syscall.EIO)
	collect()
	if got, _ := sum(t, rm, FUSEOperations, attribute.String("op", "lookup"), attribute.String("result", "ENOENT")); got != 1 {
		t.Errorf("lookup ENOENT counted %d times", got)
	}
	if got, _ := sum(t, rm, Errors, attribute.String("layer", "fuse"), attribute.String("errno", "EIO")); got != 1 {
		t.Errorf("EIO errors = %d, want 1 (ENOENT is not an error)", got)
	}
	if got, ok := sum(t, rm, Errors, attribute.String("errno", "ENOENT")); ok {
		t.Errorf("ENOENT counted as an error %d times", got)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.FUSE(context.Background(), "read", time.Now(), syscall.EIO)
	m.GCSFirstByte(context.Background(), "read", time.Millisecond)
	m.PrefetchWaited(context.Background(), "frame", time.Second, true)
	m.HookRequest(context.Background(), "prefetch", 200)
	m.OutputDurableAfter(context.Background(), time.Second)
	m.GCSRequest(context.Background(), "read", "ok")
	m.ZoneRequest(context.Background(), "ok", 1)
	m.Error(context.Background(), "fuse", syscall.EIO)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPrometheusEndpoint scrapes the endpoint over HTTP: every instrument
// of the catalog appears under PromName, the name docs/metrics.md lists.
func TestPrometheusEndpoint(t *testing.T) {
	tel, err := Setup(context.Background(), Options{MetricsAddr: "127.0.0.1:0", Version: "test",
		Env: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	m, err := New(tel.Meters, func() Snapshot {
		return Snapshot{HitBytes: 12345, Outputs: true, SourceResident: []Labeled{{"gs://b/show/", 1}}, JobResident: []Labeled{{"J1", 1}}}
	}, attribute.String("mountpoint", "/mnt/show"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	m.FUSE(ctx, "read", time.Now(), syscall.EIO)
	m.GCSFirstByte(ctx, "read", 20*time.Millisecond)
	m.PrefetchWaited(ctx, "frame", time.Second, false)
	m.HookRequest(ctx, "prefetch", 200)
	m.OutputDurableAfter(ctx, time.Second)
	m.GCSRequest(ctx, "read", "ok")
	m.ZoneRequest(ctx, "ok", 4096)

	resp, err := http.Get(tel.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, text)
	}
	for _, d := range Catalog {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(PromName(d)) + `(_bucket|_sum|_count)?[{ ]`).MatchString(text) {
			t.Errorf("%s (%s) is not in the scrape", PromName(d), d.Name)
		}
	}
	if !regexp.MustCompile(`(?m)^jitfs_cache_read_bytes_total\{[^}]*outcome="hit"[^}]*\} 12345$`).MatchString(text) {
		t.Errorf("hit bytes not scraped as 12345:\n%s", grepLines(text, "jitfs_cache_read"))
	}
	// Every series, recorded or observed, names its mount; none carries
	// the otel_scope_* labels.
	series := regexp.MustCompile(`(?m)^jitfs_\S*`).FindAllString(text, -1)
	if len(series) == 0 {
		t.Fatal("no jitfs series scraped")
	}
	for _, l := range series {
		if !strings.Contains(l, `mountpoint="/mnt/show"`) {
			t.Errorf("series without its mountpoint: %s", l)
		}
	}
	if strings.Contains(text, "otel_scope_") {
		t.Errorf("the scrape carries otel_scope labels:\n%s", grepLines(text, "otel_scope_"))
	}
}

// TestSeriesCarryTheirAttributes: two Metrics on one provider, as two
// mounts of one process, record and observe series told apart by their
// attributes; a snapshot without Outputs exports no output series.
func TestSeriesCarryTheirAttributes(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	defer mp.Shutdown(context.Background())
	ctx := context.Background()
	a, b := attribute.String("mountpoint", "/a"), attribute.String("mountpoint", "/b")
	ma, err := New(mp, func() Snapshot { return Snapshot{GCSBytes: 1} }, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := New(mp, func() Snapshot { return Snapshot{GCSBytes: 2, Outputs: true, OutputDurable: 3} }, b)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	for i := 0; i < 2; i++ {
		ma.FUSE(ctx, "read", time.Now(), 0)
		ma.GCSRequest(ctx, "read", "ok")
		ma.Error(ctx, "fuse", syscall.EIO)
	}
	mb.FUSE(ctx, "read", time.Now(), 0)
	mb.GCSRequest(ctx, "read", "ok")
	mb.HookRequest(ctx, "prefetch", 200)
	mb.ZoneRequest(ctx, "ok", 10)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	read, ok := attribute.String("op", "read"), attribute.String("result", "ok")
	for _, c := range []struct {
		name string
		kv   []attribute.KeyValue
		want int64
	}{
		{FUSEOperations, []attribute.KeyValue{a, read, ok}, 2},
		{FUSEOperations, []attribute.KeyValue{b, read, ok}, 1},
		{GCSRequests, []attribute.KeyValue{a, attribute.String("kind", "read"), ok}, 2},
		{GCSRequests, []attribute.KeyValue{b, attribute.String("kind", "read"), ok}, 1},
		{Errors, []attribute.KeyValue{a, attribute.String("errno", "EIO")}, 2},
		{HookRequests, []attribute.KeyValue{b, attribute.String("endpoint", "prefetch"), attribute.Int("status", 200)}, 1},
		{ZoneRequests, []attribute.KeyValue{b, attribute.String("result", "ok")}, 1},
		{ZoneReceived, []attribute.KeyValue{b}, 10},
		{GCSReceived, []attribute.KeyValue{a}, 1},
		{GCSReceived, []attribute.KeyValue{b}, 2},
		{OutputDurable, []attribute.KeyValue{b}, 3},
	} {
		if got, found := sum(t, rm, c.name, c.kv...); !found || got != c.want {
			t.Errorf("%s%v = %d (found %v), want %d", c.name, c.kv, got, found, c.want)
		}
	}
	for _, name := range []string{OutputStaged, OutputUploaded, OutputDurable, OutputPending, OutputFailed} {
		if got, found := sum(t, rm, name, a); found {
			t.Errorf("%s exported for a mount without outputs: %d", name, got)
		}
	}
	// The attribute sets are built once per series: recording an
	// operation allocates no attributes (the SDK's own allocations are
	// what is left).
	sdkOnly := testing.AllocsPerRun(100, func() { mb.ZoneRequest(ctx, "ok", 0) })
	withAttrs := testing.AllocsPerRun(100, func() { ma.FUSE(ctx, "read", time.Now(), 0) })
	t.Logf("allocations: a FUSE record %v, a bare counter add %v", withAttrs, sdkOnly)
	if withAttrs > 2*sdkOnly {
		t.Errorf("a FUSE record allocates %v times, a bare counter add %v", withAttrs, sdkOnly)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCatalogDocumented: docs/metrics.md names every instrument.
func TestCatalogDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Catalog {
		if !strings.Contains(string(doc), "`"+PromName(d)+"`") {
			t.Errorf("docs/metrics.md does not list `%s`", PromName(d))
		}
	}
}

func TestOTLPOnlyWhenConfigured(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if otlpWanted(get, "TRACES") || otlpWanted(get, "METRICS") {
		t.Fatal("OTLP wanted with no endpoint")
	}
	env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://127.0.0.1:4318"
	if !otlpWanted(get, "TRACES") || otlpWanted(get, "METRICS") {
		t.Fatal("a traces endpoint must enable traces only")
	}
	env["OTEL_TRACES_EXPORTER"] = "none"
	if otlpWanted(get, "TRACES") {
		t.Fatal("OTEL_TRACES_EXPORTER=none must win")
	}
	tel, err := Setup(context.Background(), Options{Env: func(k string) string {
		if k == "OTEL_SDK_DISABLED" {
			return "true"
		}
		return ""
	}, MetricsAddr: "127.0.0.1:0"})
	if err != nil || tel.MetricsURL != "" {
		t.Fatalf("OTEL_SDK_DISABLED=true still served metrics: %v %q", err, tel.MetricsURL)
	}
}

// BenchmarkFUSERecord is the cost the metrics add to one FUSE operation: a
// counter and a histogram sample through the SDK. docs/metrics.md sets it
// against the time of a warm read through the daemon.
func BenchmarkFUSERecord(b *testing.B) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	defer mp.Shutdown(context.Background())
	m, err := New(mp, nil, attribute.String("mountpoint", "/mnt/show"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.FUSE(ctx, "read", start, 0)
		}
	})
}
