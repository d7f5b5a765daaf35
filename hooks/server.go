package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/jitfs/jitfs/telemetry"
)

// tracer makes a span per hook request (the global provider's; see
// telemetry.Setup).
var tracer = otel.Tracer("github.com/jitfs/jitfs/hooks")

// Defaults for ServerOptions' limits.
const (
	DefaultMaxBodyBytes = 4 << 20
	DefaultMaxWait      = 60 * time.Second
)

// ServerOptions configures a Server. Zero limits take the defaults.
type ServerOptions struct {
	// Mountpoint is the absolute path of the jitfs mount; only paths
	// under it are handed to the Backend.
	Mountpoint string
	// Backend is the prefetch engine; nil for a daemon serving only an
	// output area (prefetch and release then answer 404 no_prefetch).
	Backend Backend
	// Outputs, when set, serves POST /v1/flush and the outputs section of
	// GET /v1/status.
	Outputs Outputs
	// SocketPath defaults to DefaultSocket(Mountpoint).
	SocketPath string
	// SocketGroup, a group name or gid, owns the 0660 socket; empty keeps
	// the daemon's own group.
	SocketGroup string
	Logger      *slog.Logger
	// Version is reported by health and status; it defaults to the
	// binary's module version.
	Version string

	MaxBodyBytes int64         // default DefaultMaxBodyBytes
	MaxItems     int           // files after expansion; default DefaultMaxItems
	MaxWait      time.Duration // longest wait_ms honoured; default DefaultMaxWait

	// ListDir names the entries of a directory of the mount, to find the
	// UDIM tiles that exist. The default reads the directory through the
	// mount with os.ReadDir; the daemon may answer from its own index.
	ListDir func(dir string) ([]string, error)
	// Metrics, when set, counts requests and records how long waiting
	// requests held their callers.
	Metrics *telemetry.Metrics
}

// Validate reports options no default can fix.
func (o ServerOptions) Validate() error {
	switch {
	case !filepath.IsAbs(o.Mountpoint):
		return fmt.Errorf("hooks: mountpoint %q is not absolute", o.Mountpoint)
	case o.Backend == nil && o.Outputs == nil:
		return errors.New("hooks: no backend")
	case o.MaxBodyBytes < 0 || o.MaxItems < 0 || o.MaxWait < 0:
		return errors.New("hooks: negative limit")
	}
	return nil
}

func (o *ServerOptions) applyDefaults() {
	o.Mountpoint = filepath.Clean(o.Mountpoint)
	if o.SocketPath == "" {
		o.SocketPath = DefaultSocket(o.Mountpoint)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			o.Version = bi.Main.Version
		}
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxItems == 0 {
		o.MaxItems = DefaultMaxItems
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.ListDir == nil {
		o.ListDir = readDirNames
	}
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, err
}

// Server serves jitfs.prefetch/v1 on a Unix socket.
type Server struct {
	opts   ServerOptions // defaults applied; read-only after NewServer
	v      *validator
	log    *slog.Logger
	ln     *net.UnixListener
	sockFI os.FileInfo // the socket as bound, to remove only our own
	http   *http.Server
	// ctx is the parent of every request's context; Close cancels it so
	// that waits in the backend end at once.
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex // guards the counters below
	requests map[string]int64
	rejected map[string]int64
	// expand serializes request expansion (see handlePrefetch).
	expand sync.Mutex
	errors int64
}

// NewServer binds the socket (replacing a stale one, refusing a live one)
// and returns a server ready to Serve. The socket accepts connections from
// the moment NewServer returns; they wait in the backlog until Serve.
func NewServer(opts ServerOptions) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.applyDefaults()
	ln, fi, err := listenSocket(opts.SocketPath, opts.SocketGroup, opts.Logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		v:        newValidator(opts.Mountpoint, opts.MaxItems, opts.MaxWait, opts.ListDir),
		log:      opts.Logger,
		ln:       ln,
		sockFI:   fi,
		ctx:      ctx,
		cancel:   cancel,
		requests: map[string]int64{},
		rejected: map[string]int64{},
	}
	s.http = &http.Server{
		Handler:           s.Handler(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A prefetch may legitimately hold its reply for MaxWait.
		WriteTimeout: opts.MaxWait + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	opts.Logger.Info("hooks: listening", "socket", opts.SocketPath, "mountpoint", opts.Mountpoint)
	return s, nil
}

// SocketPath is where the server listens.
func (s *Server) SocketPath() string { return s.opts.SocketPath }

// Serve answers requests until Close; it then returns nil.
func (s *Server) Serve() error {
	err := s.http.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops listening, ends waiting prefetches, closes connections and
// removes the socket file if it is still the one this server bound.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.closeErr = s.http.Close()
		s.ln.Close() // Serve may never have run
		if fi, err := os.Lstat(s.opts.SocketPath); err == nil && os.SameFile(fi, s.sockFI) {
			if err := os.Remove(s.opts.SocketPath); err != nil && s.closeErr == nil {
				s.closeErr = fmt.Errorf("hooks: remove socket: %w", err)
			}
		}
	})
	return s.closeErr
}

// Handler is the HTTP handler Serve uses, for embedding the API in
// another server or testing it without a socket.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		// Last resort: a bug must cost one request, not the daemon, and be
		// logged once with its stack.
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.Error("hooks: handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		s.countError()
		if !tw.wrote {
			s.writeJSON(tw, http.StatusInternalServerError, ErrorReply{Schema: Schema, Error: "internal error", Reason: "internal"})
		}
	}()
	endpoint, method := routes[r.URL.Path].name, routes[r.URL.Path].method
	if endpoint != "" {
		// The engine links the fills it starts to this span.
		ctx, span := tracer.Start(r.Context(), "jitfs.hook."+endpoint)
		defer span.End()
		r = r.WithContext(ctx)
	}
	defer func() {
		name := endpoint
		if name == "" {
			name = "other"
		}
		s.opts.Metrics.HookRequest(r.Context(), name, tw.status)
	}()
	if endpoint == "" {
		s.count("other")
		s.reject(tw, &rejection{status: http.StatusNotFound, reason: reasonNotFound, msg: "no endpoint " + r.URL.Path})
		return
	}
	s.count(endpoint)
	if r.Method != method {
		tw.Header().Set("Allow", method)
		s.reject(tw, &rejection{status: http.StatusMethodNotAllowed, reason: reasonBadMethod, msg: r.URL.Path + " takes " + method})
		return
	}
	if (endpoint == "prefetch" || endpoint == "release") && s.opts.Backend == nil {
		s.reject(tw, &rejection{status: http.StatusNotFound, reason: reasonNoPrefetch,
			msg: s.opts.Mountpoint + " is an output area; send prefetch requests to the scene mount's socket"})
		return
	}
	if endpoint == "flush" && s.opts.Outputs == nil {
		s.reject(tw, &rejection{status: http.StatusNotFound, reason: reasonNoOutputs,
			msg: s.opts.Mountpoint + " serves no output area; flush the output mount"})
		return
	}
	switch endpoint {
	case "prefetch":
		s.handlePrefetch(tw, r)
	case "release":
		s.handleRelease(tw, r)
	case "flush":
		s.handleFlush(tw, r)
	case "status":
		s.handleStatus(tw, r)
	case "health":
		s.writeJSON(tw, http.StatusOK, HealthReply{Schema: Schema, OK: true, Mountpoint: s.opts.Mountpoint, Version: s.opts.Version})
	}
}

var routes = map[string]struct{ name, method string }{
	"/v1/prefetch": {"prefetch", http.MethodPost},
	"/v1/release":  {"release", http.MethodPost},
	"/v1/status":   {"status", http.MethodGet},
	"/v1/health":   {"health", http.MethodGet},
	"/v1/flush":    {"flush", http.MethodPost},
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *rejection) {
	max := s.opts.MaxBodyBytes
	if r.ContentLength > max {
		return nil, &rejection{status: http.StatusRequestEntityTooLarge, reason: reasonTooLarge, msg: fmt.Sprintf("body of %d bytes: at most %d", r.ContentLength, max)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &rejection{status: http.StatusRequestEntityTooLarge, reason: reasonTooLarge, msg: fmt.Sprintf("body longer than %d bytes", max)}
	case err != nil:
		return nil, reject(reasonReadError, "reading the body: %v", err)
	}
	return body, nil
}

func (s *Server) handlePrefetch(w http.ResponseWriter, r *http.Request) {
	body, rej := s.readBody(w, r)
	if rej != nil {
		s.reject(w, rej)
		return
	}
	// Expansion is what a request costs in memory before the engine
	// bounds it (up to MaxItems paths): one request expands at a time, so
	// twenty wide patterns at once hold one expansion, not twenty.
	s.expand.Lock()
	pln, rej := s.v.prefetch(body)
	s.expand.Unlock()
	if rej != nil {
		s.reject(w, rej)
		return
	}
	p := pln.p
	reply := PrefetchReply{
		Schema:        Schema,
		RequestID:     pln.requestID,
		Accepted:      len(p.Wants),
		Missing:       append([]string{}, pln.missing...),
		Unmanaged:     append([]string{}, pln.unmanaged...),
		Failed:        append([]ItemError{}, pln.failed...),
		Pending:       []string{},
		WaitClampedMS: pln.clampedMS,
	}
	if len(p.Wants) > 0 {
		start := time.Now()
		results, err := s.opts.Backend.Prefetch(r.Context(), p)
		reply.WaitedMS = time.Since(start).Milliseconds()
		if err == nil && len(results) != len(p.Wants) {
			err = fmt.Errorf("hooks: the engine returned %d results for %d files", len(results), len(p.Wants))
		}
		if err != nil {
			if r.Context().Err() != nil {
				// The client left or the server is closing; nobody reads a reply.
				s.log.Debug("hooks: prefetch abandoned", "request_id", pln.requestID, "err", err)
				return
			}
			if errors.Is(err, ErrBusy) {
				s.reject(w, &rejection{status: http.StatusServiceUnavailable, reason: reasonBusy, msg: err.Error()})
				return
			}
			s.fail(w, "prefetch", pln.requestID, err)
			return
		}
		for i, res := range results {
			abs := p.Wants[i].Abs
			switch res.State {
			case Resident:
				reply.Resident++
			case Queued:
				reply.Queued++
				if p.Wait > 0 {
					reply.Pending = append(reply.Pending, abs)
				}
			case Missing:
				reply.Missing = append(reply.Missing, abs)
			case Failed:
				reply.Failed = append(reply.Failed, ItemError{Path: abs, Error: res.Err})
			default:
				reply.Failed = append(reply.Failed, ItemError{Path: abs, Error: fmt.Sprintf("engine reported unknown state %q", res.State)})
			}
		}
		reply.TimedOut = p.Wait > 0 && reply.Queued > 0
		if !reply.TimedOut {
			reply.Pending = reply.Pending[:0]
		}
	}
	if p.Wait > 0 && len(p.Wants) > 0 {
		s.opts.Metrics.PrefetchWaited(r.Context(), string(p.Scope), time.Duration(reply.WaitedMS)*time.Millisecond, reply.TimedOut)
	}
	s.log.Debug("hooks: prefetch", "request_id", pln.requestID, "job", p.Job.ID, "scope", p.Scope, "priority", p.Priority,
		"files", len(p.Wants), "resident", reply.Resident, "queued", reply.Queued, "missing", len(reply.Missing),
		"unmanaged", len(reply.Unmanaged), "failed", len(reply.Failed), "waited_ms", reply.WaitedMS, "timed_out", reply.TimedOut)
	s.writeJSON(w, http.StatusOK, reply)
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	body, rej := s.readBody(w, r)
	if rej != nil {
		s.reject(w, rej)
		return
	}
	rel, requestID, unmanaged, rej := s.v.release(body)
	if rej != nil {
		s.reject(w, rej)
		return
	}
	// Paths that all lie outside the mount release nothing here; passing
	// an empty list on would release the whole frame or job.
	if len(rel.Rels) > 0 || len(unmanaged) == 0 {
		if err := s.opts.Backend.Release(r.Context(), rel); err != nil {
			if r.Context().Err() != nil {
				return
			}
			s.fail(w, "release", requestID, err)
			return
		}
	}
	s.log.Debug("hooks: release", "request_id", requestID, "job", rel.Job, "scope", rel.Scope, "files", len(rel.Rels))
	s.writeJSON(w, http.StatusOK, ReleaseReply{Schema: Schema, RequestID: requestID, OK: true, Unmanaged: unmanaged})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	var st Status
	if s.opts.Backend != nil {
		st = s.opts.Backend.Status()
	}
	if st.Jobs == nil {
		st.Jobs = []JobStatus{}
	}
	// Empty lists, not null, for clients that iterate them.
	if st.Fetching == nil {
		st.Fetching = []ActiveFetch{}
	}
	if st.Blocked == nil {
		st.Blocked = []BlockedRead{}
	}
	reply := StatusReply{Schema: Schema, Mountpoint: s.opts.Mountpoint, Version: s.opts.Version, Status: st}
	if s.opts.Outputs != nil {
		var since uint64
		if v := r.URL.Query().Get("durable_since"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				s.reject(w, reject(reasonBadSince, "durable_since %q: want a non-negative integer", v))
				return
			}
			since = n
		}
		os := s.opts.Outputs.OutputStatus(since)
		if os.Durable == nil {
			os.Durable = []DurableOutput{}
		}
		if os.NotDurable == nil {
			os.NotDurable = []OutputFile{}
		}
		if os.Files == nil {
			os.Files = map[string]int{}
		}
		reply.Outputs = &os
	}
	reply.Requests, reply.Rejected, reply.Errors = s.Counters()
	s.writeJSON(w, http.StatusOK, reply)
}

// Counters returns copies of the request counts by endpoint, the
// rejection counts by reason, and the count of 5xx replies.
func (s *Server) Counters() (requests, rejected map[string]int64, errs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	requests = make(map[string]int64, len(s.requests))
	for k, v := range s.requests {
		requests[k] = v
	}
	rejected = make(map[string]int64, len(s.rejected))
	for k, v := range s.rejected {
		rejected[k] = v
	}
	return requests, rejected, s.errors
}

func (s *Server) count(endpoint string) {
	s.mu.Lock()
	s.requests[endpoint]++
	s.mu.Unlock()
}

func (s *Server) countError() {
	s.mu.Lock()
	s.errors++
	s.mu.Unlock()
}

func (s *Server) reject(w http.ResponseWriter, rej *rejection) {
	s.mu.Lock()
	s.rejected[rej.reason]++
	s.mu.Unlock()
	s.log.Warn("hooks: rejected a request", "reason", rej.reason, "error", rej.msg)
	s.writeJSON(w, rej.status, ErrorReply{Schema: Schema, Error: rej.msg, Reason: rej.reason})
}

func (s *Server) fail(w http.ResponseWriter, endpoint, requestID string, err error) {
	s.countError()
	s.log.Error("hooks: engine error", "endpoint", endpoint, "request_id", requestID, "err", err)
	s.writeJSON(w, http.StatusInternalServerError, ErrorReply{Schema: Schema, Error: err.Error(), Reason: "engine"})
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Keep <UDIM> and & readable for people reading replies with curl.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.log.Debug("hooks: write reply", "err", err)
	}
}

// trackingWriter remembers whether a reply was started, so the panic
// handler does not write a second status line.
type trackingWriter struct {
	http.ResponseWriter
	wrote  bool
	status int
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.status = code
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	if !t.wrote {
		t.status = http.StatusOK
	}
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

func (s *Server) handleFlush(w http.ResponseWriter, r *http.Request) {
	body, rej := s.readBody(w, r)
	if rej != nil {
		s.reject(w, rej)
		return
	}
	var req FlushRequest
	if rej := s.v.decode(body, &req); rej != nil {
		s.reject(w, rej)
		return
	}
	if rej := checkSchema(req.Schema); rej != nil {
		s.reject(w, rej)
		return
	}
	if req.WaitMS < 0 {
		s.reject(w, reject(reasonBadWait, "wait_ms %d is negative", req.WaitMS))
		return
	}
	reply := FlushReply{Schema: Schema, RequestID: req.RequestID}
	wait := time.Duration(min(req.WaitMS, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	if wait > s.opts.MaxWait {
		wait = s.opts.MaxWait
		reply.WaitClampedMS = s.opts.MaxWait.Milliseconds()
	}
	start := time.Now()
	res, err := s.opts.Outputs.Flush(r.Context(), Flush{Wait: wait, RetryFailed: req.RetryFailed})
	reply.WaitedMS = time.Since(start).Milliseconds()
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		s.fail(w, "flush", req.RequestID, err)
		return
	}
	reply.Durable, reply.NotDurable, reply.NotDurableTotal, reply.TimedOut = res.Durable, res.NotDurable, res.NotDurableTotal, res.TimedOut
	if reply.NotDurable == nil {
		reply.NotDurable = []OutputFile{}
	}
	s.log.Debug("hooks: flush", "request_id", req.RequestID, "durable", reply.Durable, "not_durable", reply.NotDurableTotal,
		"waited_ms", reply.WaitedMS, "timed_out", reply.TimedOut)
	s.writeJSON(w, http.StatusOK, reply)
}
