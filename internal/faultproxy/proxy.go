package faultproxy

import (
	"io"
	"net"
	"net/http"
	"strings"
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
	MediaRate     atomic.Int64 // bytes per second cap per media response (0: none)
}

// Start listens on 127.0.0.1 and forwards to upstream ("host:port").
func Start(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, ln: ln}
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
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), r.Body)
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
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if kind == Media && resp.StatusCode < 300 && take(&p.TruncateMedia) {
		body = io.LimitReader(resp.Body, max(resp.ContentLength/2, 0))
		n, _ := io.Copy(w, body)
		p.MediaBytes.Add(n)
		// Abort the connection so the client sees a short body.
		panic(http.ErrAbortHandler)
	}
	if rate := p.MediaRate.Load(); kind == Media && rate > 0 {
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				p.MediaBytes.Add(int64(n))
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
	n, _ := io.Copy(w, body)
	if kind == Media {
		p.MediaBytes.Add(n)
	}
}
