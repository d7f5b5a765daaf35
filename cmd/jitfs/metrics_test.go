package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/testworld"
	"github.com/jitfs/jitfs/telemetry"
)

// metricReader collects a manual reader into flat values.
type metricReader struct {
	t *testing.T
	r *sdkmetric.ManualReader
}

// value is the int64 sum or gauge of name with the given attributes, or a
// histogram's count.
func (m metricReader) value(name string, kv ...attribute.KeyValue) int64 {
	m.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.r.Collect(context.Background(), &rm); err != nil {
		m.t.Fatal(err)
	}
	match := func(set attribute.Set) bool {
		for _, want := range kv {
			if v, ok := set.Value(want.Key); !ok || v != want.Value {
				return false
			}
		}
		return true
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != name {
				continue
			}
			switch d := md.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						total += p.Value
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						total += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						total += int64(p.Count)
					}
				}
			default:
				m.t.Fatalf("%s is %T", name, md.Data)
			}
		}
	}
	return total
}

// TestMetricsOnMount reads through a real mount (in this process, so the
// SDK's manual reader sees the daemon's instruments): a cold read moves
// the miss and GCS byte counters by the object's size, a warm read only
// the hit counter.
func TestMetricsOnMount(t *testing.T) {
	w := newWorld(t, false)
	const size = 3<<20 + 12345
	want := w.PutRandom("show/shots/a.exr", size)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.MkdirAll(mnt, 0o755)
	cfg := mountConfig{bucket: testBucket, prefix: "show/", mountpoint: mnt, cacheDir: filepath.Join(t.TempDir(), "cache"),
		cacheSize: 1 << 30, endpoint: w.Proxy.Addr(), attemptTimeout: time.Minute, socket: "none", prefetchers: 4,
		// Without passthrough every read reaches the daemon, so warm reads
		// are counted too.
		passthrough: false,
		// Listing ahead only: its counters are checked below; fetching
		// ahead would move the byte counters this test checks exactly.
		speculate: daemon.Speculation{Metadata: true},
		log:       slog.New(slog.DiscardHandler),
		tel:       &telemetry.Telemetry{Meters: mp, Tracers: tracenoop.NewTracerProvider()}}
	m, err := startMount(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	mr := metricReader{t: t, r: reader}
	hit, miss := attribute.String("outcome", "hit"), attribute.String("outcome", "miss")
	p := filepath.Join(mnt, "shots/a.exr")

	gcs0, media0 := mr.value(telemetry.GCSReceived), w.Proxy.MediaBytes.Load()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, "cold read", got, want)
	gcsCold, mediaCold := mr.value(telemetry.GCSReceived)-gcs0, w.Proxy.MediaBytes.Load()-media0
	hitCold, missCold := mr.value(telemetry.CacheRead, hit), mr.value(telemetry.CacheRead, miss)
	if gcsCold != size || mediaCold != size {
		t.Errorf("cold read: GCS bytes %d (the proxy saw %d), want %d", gcsCold, mediaCold, size)
	}
	if hitCold+missCold != size || missCold == 0 {
		t.Errorf("cold read: hit %d + miss %d bytes, want %d with some missed", hitCold, missCold, size)
	}
	if n := mr.value(telemetry.GCSRequests, attribute.String("kind", "read"), attribute.String("result", "ok")); n == 0 {
		t.Error("no successful GCS read counted")
	}
	if n := mr.value(telemetry.GCSFirstByte, attribute.String("kind", "read")); n == 0 {
		t.Error("no GCS first-byte latency recorded")
	}
	// The lookup of shots/a.exr listed the mount's root flat, which
	// completed shots/ too: one listing request saved.
	flat, saved := mr.value(telemetry.ListAhead, attribute.String("outcome", "flat")), mr.value(telemetry.ListAhead, attribute.String("outcome", "saved"))
	if flat == 0 || flat > w.Proxy.Lists.Load() || saved == 0 {
		t.Errorf("listing ahead: %d flat pages (the proxy saw %d lists), %d listings saved", flat, w.Proxy.Lists.Load(), saved)
	}
	reads := mr.value(telemetry.FUSEOperations, attribute.String("op", "read"), attribute.String("result", "ok"))
	if reads == 0 || mr.value(telemetry.FUSEDuration, attribute.String("op", "read")) != reads {
		t.Errorf("FUSE reads counted %d, latency samples %d", reads, mr.value(telemetry.FUSEDuration, attribute.String("op", "read")))
	}

	// Warm: the kernel's page cache dropped, so the reads reach the daemon
	// again and are served from the cache disk.
	testworld.DropPageCache(t, p)
	if got, err = os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, "warm read", got, want)
	if d := mr.value(telemetry.GCSReceived) - gcs0 - gcsCold; d != 0 {
		t.Errorf("warm read moved %d GCS bytes", d)
	}
	if d := mr.value(telemetry.CacheRead, miss) - missCold; d != 0 {
		t.Errorf("warm read missed %d bytes", d)
	}
	if d := mr.value(telemetry.CacheRead, hit) - hitCold; d != size {
		t.Errorf("warm read hit %d bytes, want %d", d, size)
	}
	if used := mr.value(telemetry.CacheUsage); used < size {
		t.Errorf("cache usage %d < the object's %d bytes", used, size)
	}
	if b := mr.value(telemetry.CacheBudget, attribute.String("mountpoint", mnt)); b != 1<<30 {
		t.Errorf("cache budget %d for mountpoint %s", b, mnt)
	}

	if _, err := os.Stat(filepath.Join(mnt, "shots/nope.exr")); !os.IsNotExist(err) {
		t.Fatalf("stat of a missing file: %v", err)
	}
	if n := mr.value(telemetry.FUSEOperations, attribute.String("op", "lookup"), attribute.String("result", "ENOENT")); n == 0 {
		t.Error("the failed lookup was not counted")
	}
}

// TestMetricsEndpoint scrapes a real daemon's --metrics-addr over HTTP.
func TestMetricsEndpoint(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/tex/wood.png", 200_000)
	w.PutRandom("show/tex/grain.png", 50_000)
	sock := filepath.Join(t.TempDir(), "jitfs.sock")
	d := w.mountForTest("show", "", "--metrics-addr", "127.0.0.1:0", "--socket", sock)
	waitSocket(t, sock)
	if out, code := runJitfs(t, "prefetch", "--socket", sock, "--wait", "30s", d.path("tex/grain.png")); code != 0 {
		t.Fatalf("prefetch: exit %d: %s", code, out)
	}
	if _, err := os.ReadFile(d.path("tex/wood.png")); err != nil {
		t.Fatal(err)
	}
	var url string
	re := regexp.MustCompile(`url=(http://\S+/metrics)`)
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(d.Log.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("the daemon logged no metrics URL:\n%s", d.Log)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`jitfs_gcs_received_bytes_total{mountpoint="` + d.mnt + `"`,
		`jitfs_cache_budget_bytes{mountpoint="` + d.mnt + `"`,
		`jitfs_fuse_operations_total{`,
		`jitfs_fuse_duration_seconds_bucket{`,
		`jitfs_gcs_first_byte_duration_seconds_count{`,
		`jitfs_prefetch_wait_duration_seconds_count{`,
		`jitfs_cache_fetched_bytes_total{cause="prefetch"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if !regexp.MustCompile(`(?m)^jitfs_gcs_received_bytes_total\{[^}]*\} 250000$`).MatchString(text) {
		t.Errorf("GCS bytes received not 250000:\n%s", grepLines(text, "jitfs_gcs_received"))
	}
	if !regexp.MustCompile(`(?m)^jitfs_hook_requests_total\{[^}]*endpoint="prefetch"[^}]*status="200"[^}]*\} 1$`).MatchString(text) {
		t.Errorf("the prefetch request is not counted:\n%s", grepLines(text, "jitfs_hook_requests"))
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

// TestTraceFollowsAReadToGCS: with tracing on, a cold read through the
// mount makes a FUSE read span, a cache fill span linked to it, and a GCS
// read span under the fill, so one slow frame can be followed from the
// renderer's read to the GCS request.
func TestTraceFollowsAReadToGCS(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("show/vdb/smoke.0001.vdb", 1<<20)
	w.PutRandom("show/vdb/smoke.0002.vdb", 1<<20)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); tp.Shutdown(context.Background()) })

	mnt := filepath.Join(t.TempDir(), "mnt")
	os.MkdirAll(mnt, 0o755)
	m, err := startMount(context.Background(), mountConfig{bucket: testBucket, prefix: "show/", mountpoint: mnt,
		cacheDir: filepath.Join(t.TempDir(), "cache"), cacheSize: 1 << 30, endpoint: w.Proxy.Addr(),
		attemptTimeout: time.Minute, socket: filepath.Join(t.TempDir(), "hooks.sock"), prefetchers: 4,
		log: slog.New(slog.DiscardHandler), tel: &telemetry.Telemetry{Meters: noop.NewMeterProvider(), Tracers: tp, Tracing: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// A frame's prefetch: its fills link to the hook request's span.
	cl := hooks.NewClient(m.Hooks.SocketPath(), 30*time.Second)
	defer cl.Close()
	if _, err := cl.Prefetch(context.Background(), hooks.PrefetchRequest{Schema: hooks.Schema, Job: hooks.JobInfo{Job: hooks.Job{ID: "j"}},
		Scope: hooks.ScopeFrame, WaitMS: 20000, Items: []hooks.Item{{Path: filepath.Join(mnt, "vdb/smoke.0002.vdb")}}}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "vdb/smoke.0001.vdb"))
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, "read", got, want)

	spans := rec.Ended()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	count := map[string]int{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
		count[s.Name()]++
	}
	linked, fromHook := 0, 0
	for _, s := range spans {
		if s.Name() != "jitfs.gcs.read" {
			continue
		}
		fill, ok := byID[s.Parent().SpanID()]
		if !ok || fill.Name() != "jitfs.cache.fill" {
			t.Errorf("GCS read span's parent is not a cache fill: %v", s.Parent())
			continue
		}
		for _, l := range fill.Links() {
			if r, ok := byID[l.SpanContext.SpanID()]; ok && r.Name() == "jitfs.fuse.read" {
				linked++
			} else if ok && r.Name() == "jitfs.hook.prefetch" {
				fromHook++
			}
		}
	}
	if linked == 0 {
		t.Errorf("no GCS read leads back to a FUSE read; spans: %v", count)
	}
	if fromHook == 0 {
		t.Errorf("no GCS read leads back to the hook request that prefetched it; spans: %v", count)
	}
	t.Logf("spans: %v; GCS reads traced back to the FUSE read that caused them: %d, to a hook request: %d", count, linked, fromHook)
}

// TestOutputMetrics scrapes an output daemon: a frame written and made
// durable moves the durable counters and the close-to-durable histogram.
func TestOutputMetrics(t *testing.T) {
	w := newWorld(t, false)
	d := w.outputForTest("jobs/j1/out/", "", "--metrics-addr", "127.0.0.1:0")
	data := testworld.RandBytes("frame", 300_001)
	if err := writeFrame(d.mnt, "f_0001.png", data); err != nil {
		t.Fatal(err)
	}
	if out, code := runJitfs(t, "flush", "--wait", "--timeout", "60s", d.mnt); code != 0 {
		t.Fatalf("flush: exit %d: %s", code, out)
	}
	var url string
	re := regexp.MustCompile(`url=(http://\S+/metrics)`)
	if m := re.FindStringSubmatch(d.Log.String()); m != nil {
		url = m[1]
	} else {
		t.Fatalf("the output daemon logged no metrics URL:\n%s", d.Log)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^jitfs_output_durable_total\{[^}]*mountpoint="` + regexp.QuoteMeta(d.mnt) + `"[^}]*\} 1$`),
		regexp.MustCompile(`(?m)^jitfs_output_uploaded_bytes_total\{[^}]*\} 300001$`),
		regexp.MustCompile(`(?m)^jitfs_output_upload_duration_seconds_count(\{[^}]*\})? 1$`),
		regexp.MustCompile(`(?m)^jitfs_output_staged_bytes\{[^}]*\} 0$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("scrape lacks %s:\n%s", want, grepLines(text, "jitfs_output"))
		}
	}
}
