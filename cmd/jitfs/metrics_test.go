package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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
	// The series recorded as operations happen name the mount too.
	mp := `mountpoint="` + d.mnt + `"`
	for _, c := range []struct{ name, label string }{
		{"jitfs_fuse_operations_total", `op="read"`},
		{"jitfs_fuse_duration_seconds_count", `op="read"`},
		{"jitfs_gcs_requests_total", `kind="read"`},
		{"jitfs_gcs_first_byte_duration_seconds_count", `kind="read"`},
		{"jitfs_hook_requests_total", `endpoint="prefetch"`},
	} {
		if _, found := scrapeSum(text, c.name, c.label, mp); !found {
			t.Errorf("no %s{%s} with %s:\n%s", c.name, c.label, mp, grepLines(text, c.name))
		}
	}
	if strings.Contains(text, "otel_scope_") || strings.Contains(text, "jitfs_output_") {
		t.Errorf("a scene mount's scrape has otel_scope labels or output series:\n%s\n%s",
			grepLines(text, "otel_scope_"), grepLines(text, "jitfs_output_"))
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

// scrapeSum is the sum of the scraped samples of name (the whole metric
// name, e.g. jitfs_gcs_requests_total) whose labels include every one of
// labels (`mountpoint="/x"`), and whether there was any.
func scrapeSum(text, name string, labels ...string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{([^}]*)\} (\S+)$`)
	var total float64
	found := false
next:
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		for _, l := range labels {
			if !strings.Contains(","+m[1]+",", ","+l+",") {
				continue next
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		total += v
		found = true
	}
	return total, found
}

// TestMetricsTellMountsApart scrapes `jitfs run` serving two scene mounts
// and an output area while its command holds them: every series, the
// FUSE, GCS and hook ones recorded as operations happen as well as the
// observed ones, names its mount, so the mounts are told apart; there are
// no otel_scope labels, and only the output area has output series.
func TestMetricsTellMountsApart(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/a.exr", 100_000)
	w.PutRandom("lib/b.exr", 70_000)
	dir := t.TempDir()
	a, b, out := filepath.Join(dir, "show"), filepath.Join(dir, "lib"), filepath.Join(dir, "out")
	ready, hold := filepath.Join(dir, "ready"), filepath.Join(dir, "hold")
	if err := syscall.Mkfifo(hold, 0o600); err != nil {
		t.Fatal(err)
	}
	// Three failed lookups in a, none in b; then the command waits on the
	// FIFO until the test has scraped.
	script := `cat "$1/a.exr" >/dev/null && cat "$2/b.exr" >/dev/null && echo frame > "$JITFS_OUTPUTS/f.txt" &&
for n in 1 2 3; do test -e "$1/nope-$n.exr" && exit 9; done
: > "$3" && read x < "$4"`
	args := append(w.runArgs(dir), "--log-level", "info", "--metrics-addr", "127.0.0.1:0",
		"--mount", "gs://"+testBucket+"/show:"+a, "--mount", "gs://"+testBucket+"/lib:"+b,
		"--output", "gs://"+testBucket+"/jobs/m/out:"+out,
		"--", "sh", "-c", script, "sh", a, b, ready, hold)
	cmd := testworld.Command(context.Background(), args...)
	var logs testworld.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when jitfs run has exited
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Signal(syscall.SIGTERM) // forwarded to the command
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
			}
		}
	})
	waitFor(t, "the command to read both mounts", 60*time.Second, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
	m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("jitfs run logged no metrics URL:\n%s", logs.String())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)

	for _, l := range regexp.MustCompile(`(?m)^jitfs_\S*`).FindAllString(text, -1) {
		switch {
		case strings.HasPrefix(l, "jitfs_output_") && !strings.Contains(l, `mountpoint="`+out+`"`):
			t.Errorf("output series of a mount without outputs: %s", l)
		case !strings.Contains(l, `mountpoint="`+a+`"`) && !strings.Contains(l, `mountpoint="`+b+`"`) && !strings.Contains(l, `mountpoint="`+out+`"`):
			t.Errorf("series without a mount's mountpoint: %s", l)
		}
	}
	if strings.Contains(text, "otel_scope_") {
		t.Errorf("the scrape carries otel_scope labels:\n%s", grepLines(text, "otel_scope_"))
	}
	if _, found := scrapeSum(text, "jitfs_output_staged_bytes", `mountpoint="`+out+`"`); !found {
		t.Errorf("the output area has no output series:\n%s", grepLines(text, "jitfs_output_"))
	}
	for _, c := range []struct {
		mnt   string
		bytes float64
	}{{a, 100_000}, {b, 70_000}} {
		mp := `mountpoint="` + c.mnt + `"`
		if v, _ := scrapeSum(text, "jitfs_gcs_received_bytes_total", mp); v != c.bytes {
			t.Errorf("%s: GCS bytes received %v, want %v", c.mnt, v, c.bytes)
		}
		if v, _ := scrapeSum(text, "jitfs_gcs_requests_total", mp, `kind="read"`, `result="ok"`); v < 1 {
			t.Errorf("%s: no GCS read request counted", c.mnt)
		}
		if v, _ := scrapeSum(text, "jitfs_gcs_first_byte_duration_seconds_count", mp, `kind="read"`); v < 1 {
			t.Errorf("%s: no GCS first-byte latency recorded", c.mnt)
		}
		if v, _ := scrapeSum(text, "jitfs_fuse_operations_total", mp, `op="read"`, `result="ok"`); v < 1 {
			t.Errorf("%s: no FUSE read counted", c.mnt)
		}
		if v, _ := scrapeSum(text, "jitfs_fuse_duration_seconds_count", mp, `op="read"`); v < 1 {
			t.Errorf("%s: no FUSE read latency recorded", c.mnt)
		}
	}
	if v, _ := scrapeSum(text, "jitfs_fuse_operations_total", `mountpoint="`+a+`"`, `op="lookup"`, `result="ENOENT"`); v < 3 {
		t.Errorf("%s: %v failed lookups counted, want the command's 3", a, v)
	}
	if v, found := scrapeSum(text, "jitfs_fuse_operations_total", `mountpoint="`+b+`"`, `result="ENOENT"`); found {
		t.Errorf("%s: %v failed lookups counted, made in the other mount", b, v)
	}

	if err := os.WriteFile(hold, []byte("done\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("jitfs run did not exit after its command\n%s", logs.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("jitfs run: exit %d\n%s", code, logs.String())
	}
}

// TestReadErrorLogCarriesTraceIDs: with tracing on, the error line a failed
// read logs carries the read's trace and span ids, so a log search leads
// to the trace of the read that failed.
func TestReadErrorLogCarriesTraceIDs(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/tex/bad.tx", 100_000)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	var logs testworld.Buffer
	log := slog.New(telemetry.WithTraceIDs(slog.NewJSONHandler(&logs, nil)))
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.MkdirAll(mnt, 0o755)
	m, err := startMount(context.Background(), mountConfig{bucket: testBucket, prefix: "show/", mountpoint: mnt,
		cacheDir: filepath.Join(t.TempDir(), "cache"), cacheSize: 1 << 30, endpoint: w.Proxy.Addr(),
		attemptTimeout: time.Minute, socket: "none", log: log,
		tel: &telemetry.Telemetry{Meters: noop.NewMeterProvider(), Tracers: tp, Tracing: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	w.Proxy.CorruptMedia.Store(100) // every fetch of the object fails its check
	if _, err := os.ReadFile(filepath.Join(mnt, "tex/bad.tx")); err == nil {
		t.Fatal("a read of an object whose every fetch is corrupt succeeded")
	}
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"jitfs: read failed"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if line == nil {
		t.Fatalf("no read error was logged:\n%s", logs.String())
	}
	// The kernel may retry the read: the line is one of the reads' spans.
	reads := 0
	for _, s := range rec.Ended() {
		if s.Name() != "jitfs.fuse.read" {
			continue
		}
		reads++
		if line["trace_id"] == s.SpanContext().TraceID().String() && line["span_id"] == s.SpanContext().SpanID().String() {
			return
		}
	}
	t.Fatalf("the read's error line carries trace %v span %v, which is none of the %d read spans", line["trace_id"], line["span_id"], reads)
}
