package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/jitfs/jitfs/internal/progress"
)

// ZoneOptions points a Client's object reads at a zone cache: an HTTP
// cache (deploy/zone-cache, nginx) shared by the nodes of a zone, in front
// of the same bucket. Only reads of a pinned generation go there: their
// URL names immutable bytes, so a cached answer can never be stale.
// Listings and stats always go to GCS, which alone knows what is live.
type ZoneOptions struct {
	// URL is the zone cache's base URL, for example "http://10.0.0.5:8080".
	// Empty: no zone cache.
	URL string
	// Token, when set, is sent as X-Jitfs-Zone-Token: the zone cache's
	// front door admits only nodes that know it (deploy/zone-cache
	// --token-file).
	Token string
	// Timeout bounds the wait for the zone cache's response headers, and
	// any stall of its body, before the read falls back to GCS directly
	// (default 5s); a read also falls back when a piece (ZoneChunk) of it
	// comes slower than ZoneMinRate overall, past Timeout. A zone cache that is down
	// (connection refused) costs no wait at all.
	Timeout time.Duration
	// Retry is how long the zone cache is left alone after it failed
	// before a health probe asks again (default 5s, doubling to 1 min while
	// it keeps failing); reads go to GCS meanwhile.
	Retry time.Duration
	// HTTPClient, when set, is the transport to the zone cache.
	HTTPClient *http.Client
}

// ZoneStats counts what went through the zone cache.
type ZoneStats struct {
	// Reads and Bytes are ranged reads the zone cache answered in full.
	Reads, Bytes atomic.Int64
	// Errors are reads it failed (down, slow, refused, a wrong answer);
	// each was read from GCS directly instead.
	Errors atomic.Int64
	// Bypassed are reads sent to GCS directly without asking the zone
	// cache: it was down, or the object had failed its check through it.
	Bypassed atomic.Int64
	// Mismatches are objects whose bytes failed their CRC32C check; their
	// reads bypass the zone cache from then on.
	Mismatches atomic.Int64
	// Outages counts the times the zone cache was found down.
	Outages atomic.Int64
}

// ZoneStatus is the zone cache's state for `jitfs status`.
type ZoneStatus struct {
	URL        string `json:"url"`
	Bucket     string `json:"bucket"`
	Up         bool   `json:"up"`
	LastError  string `json:"last_error,omitempty"`
	Reads      int64  `json:"reads"`
	Bytes      int64  `json:"bytes"`
	Errors     int64  `json:"errors"`
	Bypassed   int64  `json:"bypassed"`
	Mismatches int64  `json:"mismatches"`
	Outages    int64  `json:"outages"`
}

// ZoneMinRate is the slowest a zone cache may deliver a read's bytes,
// overall, before the read falls back to GCS: a zone cache that trickles
// is as useless to a waiting renderer as one that is down. A piece
// (ZoneChunk) may take Timeout + ZoneChunk/ZoneMinRate.
const ZoneMinRate = 8 << 20 // bytes per second

const (
	defaultZoneTimeout = 5 * time.Second
	defaultZoneRetry   = 5 * time.Second
	maxZoneRetry       = time.Minute
	// distrustedMax bounds the objects remembered as failed through the
	// zone cache (an entry is a name and a generation).
	distrustedMax = 4096
)

// zone is a Client's path to the zone cache and what it knows of its
// health. A failure switches every read to GCS at once; a background
// probe of /healthz switches them back, so reads never pay for asking a
// zone cache that is down.
type zone struct {
	base    string // without a trailing slash
	token   string
	timeout time.Duration
	retry   time.Duration
	hc      *http.Client
	log     *slog.Logger
	bucket  string

	up   atomic.Bool
	wait atomic.Int64 // the next outage's first probe delay, doubled per relapse

	mu      sync.Mutex
	lastErr error
	closed  chan struct{}
	probes  sync.WaitGroup

	distrusted *lru.Cache[string, struct{}]
	flight     singleflight.Group // pieces being fetched, by object and index
	Stats      ZoneStats
}

func newZone(o ZoneOptions, bucket string, log *slog.Logger) (*zone, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gcs: zone cache URL %q: want http://HOST:PORT or https://HOST:PORT", o.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("gcs: zone cache URL %q: no query or fragment, only a base URL", o.URL)
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultZoneTimeout
	}
	if o.Retry <= 0 {
		o.Retry = defaultZoneRetry
	}
	hc := o.HTTPClient
	if hc == nil {
		// Its own pool: a node's reads keep a few connections to one host
		// warm, and a zone cache that is down must not hold GCS's.
		// (read's timer bounds the connect and the headers as well.)
		hc = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	d, _ := lru.New[string, struct{}](distrustedMax)
	z := &zone{base: strings.TrimSuffix(u.String(), "/"), token: o.Token, timeout: o.Timeout, retry: o.Retry,
		hc: hc, log: log, bucket: bucket, closed: make(chan struct{}), distrusted: d}
	z.up.Store(true)
	z.wait.Store(int64(o.Retry))
	return z, nil
}

func zoneKey(name string, gen int64) string { return name + "#" + strconv.FormatInt(gen, 10) }

// usable reports whether a read of name#gen should ask the zone cache.
func (z *zone) usable(name string, gen int64) bool {
	if gen <= 0 || !z.up.Load() {
		return false
	}
	return !z.distrusted.Contains(zoneKey(name, gen))
}

// objectURL is the JSON API media URL of one generation. Every node builds
// it the same way, so the zone cache's key (the raw request URI) is one
// per object generation: '/' in the name is escaped, not a path separator.
func (z *zone) objectURL(name string, gen int64) string {
	return z.base + "/storage/v1/b/" + url.PathEscape(z.bucket) + "/o/" + url.PathEscape(name) +
		"?alt=media&generation=" + strconv.FormatInt(gen, 10)
}

// errZoneNotFound: the zone cache answered 404. GCS is asked directly for
// the authoritative answer; the zone cache is not at fault.
var errZoneNotFound = errors.New("zone cache: not found")

// ZoneChunk is the unit of a read through the zone cache: every request
// asks for one ZoneChunk-aligned piece (the last one of an object ends
// with it), all of a read's pieces at once. It equals deploy/zone-cache's
// default slice, so a request is one cache entry, and:
//
//   - a cold 8 MiB part costs the zone cache one origin round trip, not
//     eight (it fetches a request's slices one after another);
//   - two fills of one node that touch one piece share one request (a
//     second request for a slice being fetched waits in the zone cache for
//     up to 500 ms, its lock's polling interval);
//   - every node asks for the same pieces, the same cache keys.
const ZoneChunk = 1 << 20

// zoneChunksAtOnce bounds one read's concurrent requests to the zone
// cache (a jitfs part is 8 MiB: 8 chunks).
const zoneChunksAtOnce = 8

// read fills p from the zone cache, or returns why it could not.
func (z *zone) read(ctx context.Context, name string, gen, off int64, p []byte) error {
	end := off + int64(len(p))
	if len(p) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(zoneChunksAtOnce)
	for c := off / ZoneChunk; c*ZoneChunk < end; c++ {
		g.Go(func() error {
			b, err := z.chunk(gctx, name, gen, c)
			if err != nil {
				return err
			}
			cs := c * ZoneChunk
			from, to := max(off, cs), min(end, cs+ZoneChunk)
			if cs+int64(len(b)) < to {
				return fmt.Errorf("zone cache answered %d bytes at %d for a read up to %d", len(b), cs, end)
			}
			copy(p[from-off:to-off], b[from-cs:to-cs])
			progress.Add(ctx, to-from)
			return nil
		})
	}
	return g.Wait()
}

// chunk returns piece c of name#gen (ZoneChunk bytes, fewer at the
// object's end), one request however many of the node's reads want it at
// once. The request outlives a reader that gives up (the others may still
// want it); its own timers bound it.
func (z *zone) chunk(ctx context.Context, name string, gen, c int64) ([]byte, error) {
	key := zoneKey(name, gen) + "@" + strconv.FormatInt(c, 10)
	ch := z.flight.DoChan(key, func() (any, error) {
		return z.fetchChunk(context.WithoutCancel(ctx), name, gen, c*ZoneChunk)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchChunk asks the zone cache for the piece at off.
func (z *zone) fetchChunk(ctx context.Context, name string, gen, off int64) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One timer bounds both the headers and every stall of the body: it is
	// pushed back whenever bytes arrive. Another bounds the whole piece.
	var stalled, slow atomic.Bool
	t := time.AfterFunc(z.timeout, func() { stalled.Store(true); cancel() })
	defer t.Stop()
	whole := time.AfterFunc(z.timeout+time.Duration(float64(ZoneChunk)/ZoneMinRate*float64(time.Second)),
		func() { slow.Store(true); cancel() })
	defer whole.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, z.objectURL(name, gen), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+ZoneChunk-1))
	if z.token != "" {
		req.Header.Set("X-Jitfs-Zone-Token", z.token)
	}
	resp, err := z.hc.Do(req)
	if err != nil {
		return nil, z.stallErr(&stalled, &slow, err)
	}
	defer resp.Body.Close()
	var n int64
	switch resp.StatusCode {
	case http.StatusPartialContent:
		// The piece, or the object's end: "bytes OFF-LAST/SIZE".
		cr := resp.Header.Get("Content-Range")
		var first, last, size int64
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &size); err != nil || first != off ||
			last < first || (last != off+ZoneChunk-1 && last != size-1) {
			return nil, fmt.Errorf("zone cache answered range %q for bytes %d-%d", cr, off, off+ZoneChunk-1)
		}
		n = last - first + 1
	case http.StatusOK:
		// A whole object smaller than the piece asked for.
		if off != 0 || resp.ContentLength < 0 || resp.ContentLength > ZoneChunk {
			return nil, fmt.Errorf("zone cache answered 200 (%d bytes) for bytes %d-%d", resp.ContentLength, off, off+ZoneChunk-1)
		}
		n = resp.ContentLength
	case http.StatusNotFound:
		return nil, errZoneNotFound
	case http.StatusForbidden:
		return nil, errors.New("zone cache refused the request (403): is this node allowed, and is --zone-token-file right?")
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("zone cache answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	// The origin's generation header, when the zone cache passes it on,
	// catches a wrong object before a byte of it is used.
	if g := resp.Header.Get("X-Goog-Generation"); g != "" && g != strconv.FormatInt(gen, 10) {
		return nil, fmt.Errorf("zone cache served generation %s for %s#%d", g, name, gen)
	}
	p := make([]byte, n)
	got := 0
	for got < len(p) {
		m, err := resp.Body.Read(p[got:])
		got += m
		if m > 0 {
			t.Reset(z.timeout)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, z.stallErr(&stalled, &slow, err)
		}
	}
	if got < len(p) {
		return nil, fmt.Errorf("zone cache body ended after %d of %d bytes", got, len(p))
	}
	return p, nil
}

func (z *zone) stallErr(stalled, slow *atomic.Bool, err error) error {
	switch {
	case stalled.Load():
		return fmt.Errorf("zone cache gave nothing for %v: %w", z.timeout, err)
	case slow.Load():
		return fmt.Errorf("zone cache delivered a piece slower than %d MiB/s: %w", ZoneMinRate>>20, err)
	}
	return err
}

// fail takes the zone cache out of use after err and starts the probe that
// brings it back. One log line per outage.
func (z *zone) fail(err error) {
	z.Stats.Errors.Add(1)
	z.mu.Lock()
	z.lastErr = err
	if !z.up.Load() {
		z.mu.Unlock()
		return
	}
	select {
	case <-z.closed:
		z.mu.Unlock()
		return
	default:
	}
	z.up.Store(false)
	wait := time.Duration(z.wait.Load())
	// A relapse right after coming back waits longer before the next probe.
	z.wait.Store(int64(min(2*wait, maxZoneRetry)))
	z.probes.Add(1)
	z.mu.Unlock()
	z.Stats.Outages.Add(1)
	z.log.Warn("zone cache failed; reading object data from GCS directly until it answers again",
		"zone", z.base, "err", err, "probe_in", wait)
	go z.probe(wait)
}

// probe asks /healthz until the zone cache answers, then puts it back in
// use.
func (z *zone) probe(wait time.Duration) {
	defer z.probes.Done()
	for {
		t := time.NewTimer(wait)
		select {
		case <-z.closed:
			t.Stop()
			return
		case <-t.C:
		}
		if err := z.healthy(); err == nil {
			z.up.Store(true)
			z.log.Info("zone cache answers again; reading object data through it", "zone", z.base)
			return
		}
		wait = min(2*wait, maxZoneRetry)
	}
}

func (z *zone) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), z.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, z.base+"/healthz", nil)
	if err != nil {
		return err
	}
	if z.token != "" {
		req.Header.Set("X-Jitfs-Zone-Token", z.token)
	}
	resp, err := z.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("zone cache health: %s", resp.Status)
	}
	return nil
}

// succeeded notes a read the zone cache answered: the next outage's probe
// starts at the base delay again.
func (z *zone) succeeded(n int) {
	z.Stats.Reads.Add(1)
	z.Stats.Bytes.Add(int64(n))
	if z.wait.Load() != int64(z.retry) {
		z.wait.Store(int64(z.retry))
	}
}

func (z *zone) close() {
	z.mu.Lock()
	select {
	case <-z.closed:
	default:
		close(z.closed)
	}
	z.mu.Unlock()
	z.probes.Wait()
}

func (z *zone) status() ZoneStatus {
	z.mu.Lock()
	var last string
	if z.lastErr != nil {
		last = z.lastErr.Error()
	}
	z.mu.Unlock()
	return ZoneStatus{URL: z.base, Bucket: z.bucket, Up: z.up.Load(), LastError: last, Reads: z.Stats.Reads.Load(), Bytes: z.Stats.Bytes.Load(),
		Errors: z.Stats.Errors.Load(), Bypassed: z.Stats.Bypassed.Load(), Mismatches: z.Stats.Mismatches.Load(),
		Outages: z.Stats.Outages.Load()}
}

// readZone tries the zone cache for one ranged read. It reports whether p
// was filled; when it was not, the caller reads from GCS.
func (c *Client) readZone(ctx context.Context, name string, gen, off int64, p []byte) bool {
	z := c.zone
	if !z.usable(name, gen) {
		z.Stats.Bypassed.Add(1)
		c.opts.Metrics.ZoneRequest(ctx, "bypassed", 0)
		return false
	}
	err := z.read(ctx, name, gen, off, p)
	switch {
	case err == nil:
		z.succeeded(len(p))
		c.opts.Metrics.ZoneRequest(ctx, "ok", int64(len(p)))
		return true
	case ctx.Err() != nil:
		// The reader gave up: nothing to say about the zone cache.
		return false
	case errors.Is(err, errZoneNotFound):
		c.opts.Metrics.ZoneRequest(ctx, "not_found", 0)
		return false
	}
	c.opts.Metrics.ZoneRequest(ctx, "error", 0)
	z.fail(err)
	return false
}

// Mismatch is told by the cache that the bytes fetched for name#gen failed
// the object's CRC32C. Whichever path served them, the object's reads
// bypass the zone cache from now on: a zone cache holding a corrupt copy
// keeps serving it, and GCS is the authority. Without a zone cache it does
// nothing.
func (c *Client) Mismatch(name string, gen int64) {
	z := c.zone
	if z == nil || gen <= 0 {
		return
	}
	if ok, _ := z.distrusted.ContainsOrAdd(zoneKey(name, gen), struct{}{}); ok {
		return
	}
	z.Stats.Mismatches.Add(1)
	c.opts.Metrics.ZoneRequest(context.Background(), "mismatch", 0)
	z.log.Warn("zone cache: an object failed its CRC32C check; reading it from GCS directly from now on",
		"zone", z.base, "object", "gs://"+c.opts.Bucket+"/"+name, "generation", gen)
}

// Zone is the zone cache's state, or nil when the client has none.
func (c *Client) Zone() *ZoneStatus {
	if c.zone == nil {
		return nil
	}
	s := c.zone.status()
	return &s
}
