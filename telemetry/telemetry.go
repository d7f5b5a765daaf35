package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Options configures Setup.
type Options struct {
	// MetricsAddr, when set, serves Prometheus text at /metrics on this
	// TCP address (":9464", "127.0.0.1:0").
	MetricsAddr string
	// Service names the process in OTLP resources ("jitfs").
	Service string
	// Version is the binary's version, for the resource.
	Version string
	// Env is the environment read for OTEL_* settings; nil means os.Getenv.
	Env func(string) string
	Log *slog.Logger
}

// Telemetry is a daemon's providers and exporters.
type Telemetry struct {
	Meters  metric.MeterProvider
	Tracers trace.TracerProvider
	// Tracing is set when spans are exported; code on hot paths makes
	// spans only then.
	Tracing bool
	// MetricsURL is the Prometheus endpoint's URL, when one is served.
	MetricsURL string

	shutdown []func(context.Context) error
}

// Noop is telemetry that records nothing: tests, and daemons that export
// nothing.
func Noop() *Telemetry {
	return &Telemetry{Meters: metricnoop.NewMeterProvider(), Tracers: tracenoop.NewTracerProvider()}
}

// Setup builds the providers. Metrics go to Prometheus when MetricsAddr is
// set and to OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is; traces go to OTLP/HTTP only when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (off by default), sampled as OTEL_TRACES_SAMPLER says. OTEL_SDK_DISABLED
// =true and OTEL_{METRICS,TRACES}_EXPORTER=none turn them off.
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	env := o.Env
	if env == nil {
		env = os.Getenv
	}
	if o.Service == "" {
		o.Service = "jitfs"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	t := Noop()
	if strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") {
		if o.MetricsAddr != "" {
			o.Log.Warn("telemetry: OTEL_SDK_DISABLED=true; not serving metrics", "metrics_addr", o.MetricsAddr)
		}
		return t, nil
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(o.Service), semconv.ServiceVersion(o.Version)))
	if err != nil {
		// A schema clash between the SDK's defaults and ours: keep ours.
		res = resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(o.Service), semconv.ServiceVersion(o.Version))
	}

	var readers []sdkmetric.Option
	if o.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		// Every series comes from the one jitfs meter: the otel_scope_*
		// labels would only lengthen each of them.
		exp, err := promexp.New(promexp.WithRegisterer(reg), promexp.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("telemetry: --metrics-addr %s: %w", o.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{o.Log}}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.Log.Error("telemetry: metrics server stopped", "err", err)
			}
		}()
		t.MetricsURL = "http://" + ln.Addr().String() + "/metrics"
		t.shutdown = append(t.shutdown, srv.Shutdown)
	}
	if otlpWanted(env, "METRICS") {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP metrics exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
		t.Meters = mp
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}
	if otlpWanted(env, "TRACES") {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		// The SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.Tracers = tp
		t.Tracing = true
		// The packages that make spans (jitfs, cache, gcs, and the GCS
		// client library itself) take their tracer from the global provider.
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(propagation.TraceContext{})
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}
	return t, nil
}

// otlpWanted: an OTLP endpoint is configured for signal (METRICS, TRACES)
// and its exporter is not switched off.
func otlpWanted(env func(string) string, signal string) bool {
	if strings.EqualFold(env("OTEL_"+signal+"_EXPORTER"), "none") {
		return false
	}
	return env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// Shutdown flushes the exporters and stops the metrics server.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}

// slogPrinter lets promhttp log through the daemon's logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("telemetry: prometheus: " + fmt.Sprint(v...)) }
