package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/jitfs/jitfs/internal/backoff"
	"github.com/jitfs/jitfs/internal/progress"
	"github.com/jitfs/jitfs/telemetry"
)

// tracer makes a span per GCS read attempt, a child of the cache fill that
// needed the bytes (the global provider's: see telemetry.Setup).
var tracer = otel.Tracer("github.com/jitfs/jitfs/gcs")

// Sentinel errors, namespaced in their text.
var (
	ErrNotFound       = errors.New("gcs: object not found")
	ErrBucketNotFound = errors.New("gcs: bucket not found")
)

// Options configures a Client.
type Options struct {
	// Bucket is the bucket every call addresses.
	Bucket string
	// Endpoint, when set, points the client at an emulator
	// (for example "http://127.0.0.1:4443") without credentials. When
	// empty, STORAGE_EMULATOR_HOST is honoured by the storage client
	// itself, and otherwise Application Default Credentials are used.
	Endpoint string
	// Attempts bounds how often one call is tried (default 5).
	Attempts int
	// InitialBackoff is the first retry delay (default 100ms), doubling up
	// to MaxBackoff (default 2s); each delay is drawn from [b/2, 3b/2)
	// around that base (internal/backoff).
	InitialBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one attempt of a ranged read, a stat, a listing
	// page, a bucket check or a delete (default 60s), so a stalled
	// connection is abandoned and retried instead of hanging a render.
	// Uploads are not bounded by it: a large output's upload takes as long
	// as its bytes need, and a stalled one is cut by the caller's context.
	AttemptTimeout time.Duration
	// HTTPClient, when set, replaces the transport (tests inject faults
	// this way). It is used only together with an emulator endpoint.
	HTTPClient *http.Client
	// Metrics, when set, records the time to each response's first byte.
	Metrics *telemetry.Metrics
	// Zone, when its URL is set, sends object reads through a zone cache
	// first (ZoneOptions).
	Zone ZoneOptions
	// Logger hears of the zone cache going away and coming back (default:
	// discard).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 60 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (o Options) Validate() error {
	if o.Bucket == "" {
		return errors.New("gcs: bucket name is empty")
	}
	if strings.ContainsAny(o.Bucket, "/ ") {
		return fmt.Errorf("gcs: invalid bucket name %q", o.Bucket)
	}
	return nil
}

// Attrs is what jitfs needs to know of one object generation.
type Attrs struct {
	Name       string
	Size       int64
	Generation int64
	Updated    time.Time
	CRC32C     uint32
	HasCRC32C  bool
	// Metadata is the object's custom metadata (nil when it has none).
	Metadata map[string]string
}

// Stats counts requests made through a Client, for benchmarks and tests.
type Stats struct {
	Lists, Stats, Reads, Retries atomic.Int64
	BytesRead                    atomic.Int64
}

// Client is a bucket-scoped GCS adapter.
type Client struct {
	opts   Options
	client *storage.Client
	bucket *storage.BucketHandle
	zone   *zone // nil without a zone cache
	Stats  Stats
}

// New creates a client for opts.Bucket. It does not contact GCS; call
// CheckBucket to fail early on a missing bucket or bad credentials.
func New(ctx context.Context, opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var z *zone
	if opts.Zone.URL != "" {
		var err error
		if z, err = newZone(opts.Zone, opts.Bucket, opts.Logger); err != nil {
			return nil, err
		}
	}
	var copts []option.ClientOption
	if ep := opts.Endpoint; ep != "" {
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		copts = append(copts, option.WithEndpoint(strings.TrimSuffix(ep, "/")+"/storage/v1/"), option.WithoutAuthentication())
		if opts.HTTPClient != nil {
			copts = append(copts, option.WithHTTPClient(opts.HTTPClient))
		}
	} else if os.Getenv("STORAGE_EMULATOR_HOST") != "" && opts.HTTPClient != nil {
		copts = append(copts, option.WithHTTPClient(opts.HTTPClient))
	}
	// JSON reads carry the generation as a query parameter on the same API
	// surface as metadata calls, which real GCS and the emulator both serve.
	copts = append(copts, storage.WithJSONReads())
	c, err := storage.NewClient(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("gcs: create client (credentials?): %w", err)
	}
	// Retries are ours: bounded attempts, classified errors, counted.
	b := c.Bucket(opts.Bucket).Retryer(storage.WithPolicy(storage.RetryNever))
	return &Client{opts: opts, client: c, bucket: b, zone: z}, nil
}

// Bucket returns the bucket name.
func (c *Client) Bucket() string { return c.opts.Bucket }

// Close releases the client's connections.
func (c *Client) Close() error {
	if c.zone != nil {
		c.zone.close()
	}
	return c.client.Close()
}

// CheckBucket verifies the bucket exists and the credentials can read it.
func (c *Client) CheckBucket(ctx context.Context) error {
	return c.retry(ctx, "bucket attrs", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
		_, err := c.bucket.Attrs(ctx)
		if errors.Is(err, storage.ErrBucketNotExist) {
			return fmt.Errorf("%w: gs://%s", ErrBucketNotFound, c.opts.Bucket)
		}
		return err
	})
}

// Stat returns the live generation of object name.
func (c *Client) Stat(ctx context.Context, name string) (Attrs, error) {
	var out Attrs
	err := c.retry(ctx, "stat "+name, func(ctx context.Context) error {
		c.Stats.Stats.Add(1)
		ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
		a, err := c.bucket.Object(name).Attrs(ctx)
		if err != nil {
			if errors.Is(err, storage.ErrObjectNotExist) {
				return fmt.Errorf("%w: gs://%s/%s", ErrNotFound, c.opts.Bucket, name)
			}
			return err
		}
		out = toAttrs(a)
		return nil
	})
	return out, err
}

func toAttrs(a *storage.ObjectAttrs) Attrs {
	return Attrs{
		Name: a.Name, Size: a.Size, Generation: a.Generation, Updated: a.Updated,
		CRC32C: a.CRC32C, HasCRC32C: a.CRC32C != 0 || a.Size == 0, Metadata: a.Metadata,
	}
}

// Page is one page of a delimiter listing.
type Page struct {
	Objects  []Attrs
	Prefixes []string // full prefixes, each ending in "/"
	Next     string   // token for the next page; "" when done
}

// ListPage lists one page of the objects and sub-prefixes directly under
// prefix (which is "" or ends in "/"). pageSize 0 means 1000, GCS's maximum.
func (c *Client) ListPage(ctx context.Context, prefix, token string, pageSize int) (Page, error) {
	return c.listPage(ctx, prefix, "/", token, pageSize)
}

// ListFlatPage lists one page of every object under prefix, at any depth,
// in name order (no Prefixes): one request answers a whole small tree.
func (c *Client) ListFlatPage(ctx context.Context, prefix, token string, pageSize int) (Page, error) {
	return c.listPage(ctx, prefix, "", token, pageSize)
}

func (c *Client) listPage(ctx context.Context, prefix, delim, token string, pageSize int) (Page, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	var out Page
	err := c.retry(ctx, "list "+prefix, func(ctx context.Context) error {
		c.Stats.Lists.Add(1)
		ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
		q := &storage.Query{Prefix: prefix, Delimiter: delim, Projection: storage.ProjectionNoACL}
		// Only the fields toAttrs keeps: a flat page holds a thousand objects.
		if err := q.SetAttrSelection([]string{"Name", "Size", "Generation", "Updated", "CRC32C", "Metadata"}); err != nil {
			return err
		}
		it := c.bucket.Objects(ctx, q)
		var attrs []*storage.ObjectAttrs
		next, err := iterator.NewPager(it, pageSize, token).NextPage(&attrs)
		if err != nil {
			if errors.Is(err, storage.ErrBucketNotExist) {
				return fmt.Errorf("%w: gs://%s", ErrBucketNotFound, c.opts.Bucket)
			}
			return err
		}
		out = Page{Next: next}
		for _, a := range attrs {
			if a.Prefix != "" {
				out.Prefixes = append(out.Prefixes, a.Prefix)
				continue
			}
			out.Objects = append(out.Objects, toAttrs(a))
		}
		return nil
	})
	return out, err
}

// errShortBody marks a response that ended before the requested length: a
// truncated transfer, retried like any transient fault.
var errShortBody = errors.New("gcs: response body shorter than requested range")

// ReadRange fills p with the bytes of generation gen of object name starting
// at off. It never returns partial results: either all of p is filled or an
// error is returned. A generation that no longer exists yields ErrNotFound.
//
// With a zone cache, the read asks it first and falls back to GCS directly
// when it is down, slow or wrong (ZoneOptions); either way the bytes are
// the generation's, and the cache checks them against its CRC32C alike.
func (c *Client) ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error {
	if c.zone != nil && c.readZone(ctx, name, gen, off, p) {
		return nil
	}
	return c.retry(ctx, fmt.Sprintf("read %s#%d [%d,%d)", name, gen, off, off+int64(len(p))), func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
		ctx, span := tracer.Start(ctx, "jitfs.gcs.read")
		defer span.End()
		if span.IsRecording() {
			span.SetAttributes(attribute.String("gcs.bucket", c.opts.Bucket), attribute.String("gcs.object", name),
				attribute.Int64("gcs.generation", gen), attribute.Int64("offset", off), attribute.Int("length", len(p)))
		}
		c.Stats.Reads.Add(1)
		o := c.bucket.Object(name)
		if gen > 0 {
			o = o.Generation(gen)
		}
		start := time.Now()
		r, err := o.NewRangeReader(ctx, off, int64(len(p)))
		if err == nil {
			// NewRangeReader returns once the response headers arrived.
			c.opts.Metrics.GCSFirstByte(ctx, "read", time.Since(start))
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
			if errors.Is(err, storage.ErrObjectNotExist) {
				return fmt.Errorf("%w: gs://%s/%s#%d", ErrNotFound, c.opts.Bucket, name, gen)
			}
			return err
		}
		span.AddEvent("first byte")
		defer r.Close()
		// Each attempt fills p from its start: its progress too.
		progress.Reset(ctx)
		n, err := io.ReadFull(progress.Reader(ctx, r), p)
		c.Stats.BytesRead.Add(int64(n))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return errShortBody
		}
		return err
	})
}

// IsPermanent reports whether err will not go away by retrying.
func IsPermanent(err error) bool {
	return err != nil && !retryable(err)
}

func retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrBucketNotFound), errors.Is(err, ErrPrecondition):
		return false
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, errShortBody), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code == 408 || gerr.Code == 429 || gerr.Code >= 500
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return true
	}
	var operr *net.OpError
	if errors.As(err, &operr) {
		return true
	}
	// The storage client reports non-2xx reads as plain errors carrying the
	// status; connection-level failures surface as *url.Error, which is a
	// net.Error and handled above. An unclassified error is treated as
	// transient: a render is better served by one more attempt than by an
	// early EIO.
	return !errors.Is(err, storage.ErrObjectNotExist)
}

// requestResult classifies one attempt for the metrics: a bounded set.
func requestResult(err error, ctx context.Context) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound), errors.Is(err, storage.ErrObjectNotExist), errors.Is(err, storage.ErrBucketNotExist):
		return "not_found"
	case errors.Is(err, ErrPrecondition):
		return "precondition_failed"
	case ctx.Err() != nil:
		return "canceled"
	case retryable(err) || errors.Is(err, context.Canceled):
		return "transient"
	}
	return "error"
}

func (c *Client) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	bo := backoff.New(c.opts.InitialBackoff, c.opts.MaxBackoff)
	var err error
	kind, _, _ := strings.Cut(what, " ")
	for attempt := 1; ; attempt++ {
		err = fn(ctx)
		c.opts.Metrics.GCSRequest(ctx, kind, requestResult(err, ctx))
		// A cancellation that is not ours came from inside the client
		// (a torn connection, an internal timeout): transient, retry it.
		spurious := errors.Is(err, context.Canceled) && ctx.Err() == nil
		if err == nil || !(retryable(err) || spurious) || ctx.Err() != nil {
			break
		}
		// A parent deadline is not an attempt timeout: stop.
		if attempt >= c.opts.Attempts {
			break
		}
		c.Stats.Retries.Add(1)
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gcs: %s: %w (after %d attempts, last error: %v)", what, ctx.Err(), attempt, err)
		case <-t.C:
		}
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("gcs: %s: %w: %v", what, ctx.Err(), err)
		}
		return fmt.Errorf("gcs: %s: %w", what, err)
	}
	return nil
}

// ErrPrecondition is wrapped when a conditional write or delete found a
// different generation than the one it named: someone else changed the
// object since it was looked at.
var ErrPrecondition = errors.New("gcs: precondition failed")

// UploadOptions qualifies one Upload.
type UploadOptions struct {
	// IfGeneration makes the write conditional on the object's live
	// generation being exactly this one; IfAbsent, on there being none.
	// Neither set: unconditional.
	IfGeneration int64
	IfAbsent     bool
	// CRC32C is the Castagnoli checksum of the bytes; it is sent with the
	// object so GCS rejects the upload if what arrived differs.
	CRC32C uint32
	// Metadata is stored as the object's custom metadata.
	Metadata    map[string]string
	ContentType string
	// ChunkSize is the resumable upload chunk (default the storage
	// client's 16 MiB); objects smaller than one chunk go in one request.
	ChunkSize int
}

// Upload writes size bytes read from r at offset 0 as object name and
// returns the new generation's attributes. The bytes are re-read from r on
// every attempt, so a transient failure (5xx, 429, a reset) is retried like
// a read; a precondition failure is returned at once, wrapping
// ErrPrecondition.
func (c *Client) Upload(ctx context.Context, name string, r io.ReaderAt, size int64, o UploadOptions) (Attrs, error) {
	var out Attrs
	err := c.retry(ctx, fmt.Sprintf("upload %s (%d bytes)", name, size), func(ctx context.Context) error {
		obj := c.bucket.Object(name)
		switch {
		case o.IfAbsent:
			obj = obj.If(storage.Conditions{DoesNotExist: true})
		case o.IfGeneration > 0:
			obj = obj.If(storage.Conditions{GenerationMatch: o.IfGeneration})
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // an abandoned attempt must not commit later
		w := obj.NewWriter(ctx)
		w.CRC32C, w.SendCRC32C = o.CRC32C, true
		w.Metadata = o.Metadata
		w.ContentType = o.ContentType
		if o.ChunkSize > 0 {
			w.ChunkSize = o.ChunkSize
		}
		n, err := io.Copy(w, io.NewSectionReader(r, 0, size))
		if err == nil && n != size {
			err = fmt.Errorf("gcs: upload %s: source gave %d of %d bytes", name, n, size)
		}
		if err != nil {
			// Cancelling the writer's context before Close abandons the
			// upload: nothing of it is committed.
			cancel()
			_ = w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return classifyWrite(err)
		}
		out = toAttrs(w.Attrs())
		return nil
	})
	return out, err
}

// Delete removes object name. With gen > 0 it removes only that
// generation (ErrPrecondition if the live one is another). An object that
// is already gone is not an error: deleting is idempotent.
func (c *Client) Delete(ctx context.Context, name string, gen int64) error {
	return c.retry(ctx, "delete "+name, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
		obj := c.bucket.Object(name)
		if gen > 0 {
			obj = obj.If(storage.Conditions{GenerationMatch: gen})
		}
		err := obj.Delete(ctx)
		if errors.Is(err, storage.ErrObjectNotExist) {
			return nil
		}
		return classifyWrite(err)
	})
}

func classifyWrite(err error) error {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == 412 {
		return fmt.Errorf("%w: %v", ErrPrecondition, err)
	}
	return err
}
