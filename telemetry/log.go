package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// WithTraceIDs wraps h so that a record logged with a context holding a
// recording or sampled span (log.InfoContext(ctx, …) inside a traced
// operation) carries trace_id and span_id: a log line leads to its trace,
// and a slow span to what was logged during it. Without tracing there is
// no such span and records pass through unchanged.
func WithTraceIDs(h slog.Handler) slog.Handler { return traceIDHandler{h} }

type traceIDHandler struct{ slog.Handler }

func (h traceIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// r is this call's own copy, which slog does not use again.
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceIDHandler{h.Handler.WithAttrs(as)}
}

func (h traceIDHandler) WithGroup(name string) slog.Handler {
	return traceIDHandler{h.Handler.WithGroup(name)}
}
