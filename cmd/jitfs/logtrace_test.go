package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestLogsCarryTraceIDs: the commands' JSON logger, given the context of
// a traced operation, writes that span's trace_id and span_id on the
// line (through loggers derived With attributes too); a line logged
// outside any span has neither. The ids are those the exporter sends.
func TestLogsCarryTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	ctx, span := tp.Tracer("test").Start(context.Background(), "jitfs.fuse.read")
	log.ErrorContext(ctx, "jitfs: read failed", "errno", "EIO")
	log.With("mountpoint", "/mnt/show").WarnContext(ctx, "slow fill")
	span.End()
	log.InfoContext(context.Background(), "untraced")

	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans exported", len(ended))
	}
	wantTrace, wantSpan := ended[0].SpanContext().TraceID().String(), ended[0].SpanContext().SpanID().String()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines:\n%s", len(lines), buf.String())
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, l)
		}
		traced := i < 2
		if traced && (m["trace_id"] != wantTrace || m["span_id"] != wantSpan) {
			t.Errorf("line %d: trace_id %v span_id %v, want %s %s\n%s", i, m["trace_id"], m["span_id"], wantTrace, wantSpan, l)
		}
		if _, has := m["trace_id"]; !traced && has {
			t.Errorf("an untraced line has a trace_id: %s", l)
		}
		if _, has := m["span_id"]; !traced && has {
			t.Errorf("an untraced line has a span_id: %s", l)
		}
	}
	if !strings.Contains(lines[1], `"mountpoint":"/mnt/show"`) {
		t.Errorf("the derived logger lost its attributes: %s", lines[1])
	}
}
