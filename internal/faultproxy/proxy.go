package faultproxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind classifies a GCS JSON API request.
type Kind int

// Request kinds.
const (
	Other Kind = iota
	List
	Stat
	Media
	Upload // a simple, multipart or resumable upload request (any chunk)
)

// Proxy forwards to an upstream GCS endpoint.
type Proxy struct {
	upstream string
	srv      *http.Server
	ln       net.Listener

	// Counters.
	Lists, Stats, MediaReqs, MediaBytes atomic.Int64

	// Faults, settable while running.
	FailMedia     atomic.Int64 // reply 503 to the next N media requests
	TruncateMedia atomic.Int64 // cut the body of the next N media requests in half
	Outage        atomic.Bool  // reply 503 to everything
	StallMedia    atomic.Int64 // nanoseconds to stall each media request before replying
	CorruptMedia  atomic.Int64 // flip one byte in the middle of the next N media responses
	MediaRate     atomic.Int64 // bytes per second cap per media response (0: none)
	// StallAll holds every request (lists, stats, reads, anything) unanswered
	// while set, as a link that stopped passing packets; a held request is
	// released when it is cleared or the client gives up.
	StallAll atomic.Bool
	// Held counts requests that StallAll has held.
	Held atomic.Int64
	// HoldMedia, when set, holds each media request whose unescaped URL
	// path it returns true for, until it returns false for it (it is asked
	// again every few milliseconds) or the client gives up: one object's
	// reads stuck on the link while others pass. HeldMedia counts them.
	HoldMedia atomic.Pointer[func(path string) bool]
	HeldMedia atomic.Int64

	// Uploads counts upload requests (every chunk of a resumable upload);
	// UploadBytes, the request body bytes forwarded for them.
	Uploads, UploadBytes atomic.Int64
	// FailUploads replies UploadFailCode to the next N upload requests;
	// UploadOutage, to every upload request while set; UploadOutageUntil
	// (unix nanoseconds), to every upload request until then. The status
	// defaults to 503; 403 makes the failure permanent for the client.
	FailUploads       atomic.Int64
	UploadOutage      atomic.Bool
	UploadOutageUntil atomic.Int64
	UploadFailCode    atomic.Int64
	// UploadRate caps the aggregate upload bandwidth in bytes per second
	// (0: none): one pacer shared by every connection, like a WAN uplink.
	UploadRate atomic.Int64
	// StallUploads holds each upload request this many nanoseconds before
	// forwarding it (an upload in flight, for crash tests).
	StallUploads atomic.Int64

	pace pacer
}

// Start listens on 127.0.0.1 and forwards to upstream ("host:port").
func Start(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, ln: ln}
	p.pace.rate = &p.UploadRate
	p.srv = &http.Server{Handler: p}
	go p.srv.Serve(ln)
	return p, nil
}

// Addr is the proxy's host:port, for the client's endpoint.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

func classify(r *http.Request) Kind {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/upload/"):
		return Upload
	case r.URL.Query().Get("alt") == "media" || strings.HasPrefix(path, "/download/"):
		return Media
	case r.Method == http.MethodGet && strings.HasSuffix(strings.TrimSuffix(path, "/"), "/o"):
		return List
	case r.Method == http.MethodGet && strings.Contains(path, "/o/"):
		return Stat
	}
	return Other
}

func take(c *atomic.Int64) bool {
	for {
		n := c.Load()
		if n <= 0 {
			return false
		}
		if c.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// ServeHTTP forwards one request, applying the configured faults.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := classify(r)
	switch kind {
	case List:
		p.Lists.Add(1)
	case Stat:
		p.Stats.Add(1)
	case Media:
		p.MediaReqs.Add(1)
	case Upload:
		p.Uploads.Add(1)
	}
	if p.StallAll.Load() {
		p.Held.Add(1)
		for p.StallAll.Load() {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if hold := p.HoldMedia.Load(); kind == Media && hold != nil && (*hold)(r.URL.Path) {
		p.HeldMedia.Add(1)
		for {
			hold := p.HoldMedia.Load()
			if hold == nil || !(*hold)(r.URL.Path) {
				break
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	if kind == Upload && p.uploadFails() {
		code := int(p.UploadFailCode.Load())
		if code == 0 {
			code = http.StatusServiceUnavailable
		}
		// Drain the body, as a front end that refuses after reading it.
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"code":%d,"message":"injected upload failure"}}`, code)
		return
	}
	var reqBody io.Reader = r.Body
	if kind == Upload {
		if d := time.Duration(p.StallUploads.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		reqBody = &countingReader{r: r.Body, n: &p.UploadBytes, pace: &p.pace}
	}
	if p.Outage.Load() || (kind == Media && take(&p.FailMedia)) {
		http.Error(w, `{"error":{"code":503,"message":"injected outage"}}`, http.StatusServiceUnavailable)
		return
	}
	if kind == Media {
		if d := time.Duration(p.StallMedia.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), reqBody)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.ContentLength = r.ContentLength
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	// A resumable upload's session URL names the emulator; point it back
	// at the proxy so its chunks cross the proxy (and its faults) too.
	if loc := resp.Header.Get("Location"); loc != "" {
		w.Header().Set("Location", strings.Replace(loc, p.upstream, p.Addr(), 1))
	}
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if kind == Media && resp.StatusCode < 300 && take(&p.TruncateMedia) {
		body = io.LimitReader(resp.Body, max(resp.ContentLength/2, 0))
		io.Copy(&countingWriter{w, &p.MediaBytes}, body)
		// Abort the connection so the client sees a short body.
		panic(http.ErrAbortHandler)
	}
	if rate := p.MediaRate.Load(); kind == Media && rate > 0 {
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := (&countingWriter{w, &p.MediaBytes}).Write(buf[:n]); werr != nil {
					return
				}
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
				time.Sleep(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
			}
			if err != nil {
				return
			}
		}
	}
	if kind == Media {
		var out io.Writer = &countingWriter{w, &p.MediaBytes}
		if resp.StatusCode < 300 && resp.ContentLength > 0 && take(&p.CorruptMedia) {
			out = &flipWriter{w: out, at: resp.ContentLength / 2}
		}
		io.Copy(out, body)
		return
	}
	io.Copy(w, body)
}

// flipWriter inverts the byte at offset at of what passes through it: a
// corrupt response that neither TLS nor the length would reveal.
type flipWriter struct {
	w   io.Writer
	at  int64
	pos int64
}

func (f *flipWriter) Write(b []byte) (int, error) {
	if i := f.at - f.pos; i >= 0 && i < int64(len(b)) {
		c := append([]byte(nil), b...)
		c[i] ^= 0xff
		b = c
	}
	f.pos += int64(len(b))
	return f.w.Write(b)
}

// countingWriter counts media bytes before handing them to the client, so
// a test that has received the bytes always sees them counted.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	k, err := c.w.Write(b)
	c.n.Add(int64(k - len(b))) // what the client never got
	return k, err
}

func (p *Proxy) uploadFails() bool {
	if p.UploadOutage.Load() || take(&p.FailUploads) {
		return true
	}
	until := p.UploadOutageUntil.Load()
	return until > 0 && time.Now().UnixNano() < until
}

// countingReader counts and paces an upload body as it is forwarded.
type countingReader struct {
	r    io.Reader
	n    *atomic.Int64
	pace *pacer
}

func (c *countingReader) Read(b []byte) (int, error) {
	if len(b) > 32<<10 {
		b = b[:32<<10]
	}
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	c.pace.wait(n)
	return n, err
}

// pacer is a token bucket shared by every upload connection.
type pacer struct {
	rate *atomic.Int64
	mu   sync.Mutex
	next time.Time // when the bytes sent so far have been paid for
}

func (p *pacer) wait(n int) {
	rate := p.rate.Load()
	if rate <= 0 || n <= 0 {
		return
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	until := p.next
	p.mu.Unlock()
	time.Sleep(time.Until(until))
}
