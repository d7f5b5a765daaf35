// Package telemetry is jitfs's OpenTelemetry set-up and the one place
// where every metric instrument is defined: its name, unit, description
// and attributes (Catalog, listed in docs/metrics.md).
//
// A daemon calls Setup once. Metrics are exported as Prometheus on the
// daemon's --metrics-addr and, when the standard OTEL_EXPORTER_OTLP_*
// variables name an endpoint, over OTLP/HTTP as well; traces go only to
// OTLP and are off unless an endpoint is set, with sampling from the
// standard OTEL_TRACES_SAMPLER variables. Tests use Noop, or an SDK
// provider with a manual reader.
//
// The package imports no other jitfs package: counters the daemon already
// keeps (cache, GCS, prefetch and output statistics) reach it as a
// Snapshot read at collection time, so the read path pays nothing for
// them; only latencies and per-operation results are recorded as they
// happen.
package telemetry
