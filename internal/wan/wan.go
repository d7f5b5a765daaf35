package wan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Defaults: a cloud region a few hundred kilometres away, behind a fat link.
const (
	DefaultRTT       = 20 * time.Millisecond
	DefaultBandwidth = 100_000_000 // bytes per second: 100 MB/s
)

// ErrNotIsolated is returned by Start when asked to cap bandwidth outside
// the private network namespace, where it would shape the host's loopback.
var ErrNotIsolated = errors.New("wan: refusing to shape the host's loopback: call wan.Reexec first so the shaping happens in a private network namespace")

// Link describes the emulated link.
type Link struct {
	// RTT is added to every request's round trip, half on the way up and
	// half on the way down. Toxiproxy counts in whole milliseconds, so it
	// is rounded to the nearest one; 0 adds none.
	RTT time.Duration
	// Bandwidth caps, in bytes per second, the sum of all downloads through
	// the link; 0 leaves it unlimited. Uploads are not capped.
	Bandwidth int64
}

// DefaultLink returns the link `jitfs bench` emulates unless told otherwise.
func DefaultLink() Link {
	return Link{RTT: DefaultRTT, Bandwidth: DefaultBandwidth}
}

// Validate reports a link that cannot be emulated.
func (l Link) Validate() error {
	if l.RTT < 0 {
		return fmt.Errorf("wan: negative RTT %v", l.RTT)
	}
	if l.Bandwidth < 0 {
		return fmt.Errorf("wan: negative bandwidth %d B/s", l.Bandwidth)
	}
	if l.Bandwidth >= 1<<60 {
		return fmt.Errorf("wan: bandwidth %d B/s is beyond what tc can express", l.Bandwidth)
	}
	return nil
}

// String describes the link for logs and reports: "20ms RTT, 100 MB/s".
func (l Link) String() string {
	return fmt.Sprintf("%v RTT, %s", l.RTT, formatBandwidth(l.Bandwidth))
}

// latencyMS splits the RTT between the two directions, in Toxiproxy's unit.
func (l Link) latencyMS() (up, down int64) {
	ms := l.RTT.Round(time.Millisecond).Milliseconds()
	return ms / 2, ms - ms/2
}

// Shaper is a running emulated link: a Toxiproxy proxy in front of the
// upstream, and the htb qdisc that caps what the proxy sends to clients.
type Shaper struct {
	link  Link
	log   *slog.Logger
	proxy *toxiproxy.Proxy
	addr  string // the proxy's listening address, fixed once it started
	tc    string // tc's path; "" when no bandwidth cap was installed

	closeOnce sync.Once
	closeErr  error
}

// Start puts the link in front of upstream ("host:port" of the GCS
// emulator): clients dial Addr instead. With a bandwidth cap it must run in
// the private namespace (see Reexec), as root, with tc installed. log may be
// nil.
func Start(upstream string, l Link, log *slog.Logger) (*Shaper, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Shaper{link: l, log: log}
	if l.Bandwidth > 0 {
		if !InNamespace() {
			return nil, ErrNotIsolated
		}
		tc, err := findTC()
		if err != nil {
			return nil, err
		}
		s.tc = tc
	}
	if InNamespace() {
		if err := loopbackUp(); err != nil {
			return nil, err
		}
	}

	// Toxiproxy logs through zerolog; only its errors matter here ("Unable
	// to open connection to upstream"): its warnings fire on every client
	// that hangs up.
	zl := zerolog.New(zerologToSlog{log}).Level(zerolog.ErrorLevel)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zl)
	s.proxy = toxiproxy.NewProxy(srv, "wan", "127.0.0.1:0", upstream)
	if err := s.proxy.Start(); err != nil {
		return nil, fmt.Errorf("wan: starting the proxy to %s: %w", upstream, err)
	}
	s.addr = s.proxy.Listen
	up, down := l.latencyMS()
	for _, t := range []struct {
		stream string
		ms     int64
	}{{"upstream", up}, {"downstream", down}} {
		if t.ms == 0 {
			continue
		}
		if err := addLatency(s.proxy, t.stream, t.ms); err != nil {
			s.proxy.Stop()
			return nil, err
		}
	}
	if s.tc != "" {
		p, err := strconv.Atoi(s.addr[strings.LastIndexByte(s.addr, ':')+1:])
		if err != nil {
			s.proxy.Stop()
			return nil, fmt.Errorf("wan: proxy address %q: %w", s.addr, err)
		}
		if err := installHTB(s.tc, p, l.Bandwidth); err != nil {
			s.proxy.Stop()
			return nil, err
		}
	}
	attrs := []any{"addr", s.addr, "upstream", upstream, "rtt", l.RTT, "bandwidth", formatBandwidth(l.Bandwidth)}
	if s.tc != "" {
		attrs = append(attrs, "htb_burst_bytes", htbBurst(l.Bandwidth))
	}
	log.Info("wan: link up", attrs...)
	return s, nil
}

// addLatency goes through Toxiproxy's JSON toxic API: it is the library's
// only exported way to attach a toxic to a proxy.
func addLatency(p *toxiproxy.Proxy, stream string, ms int64) error {
	spec, err := json.Marshal(map[string]any{
		"name":       "latency_" + stream,
		"type":       "latency",
		"stream":     stream,
		"toxicity":   1.0,
		"attributes": map[string]int64{"latency": ms, "jitter": 0},
	})
	if err != nil {
		return err
	}
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(string(spec))); err != nil {
		return fmt.Errorf("wan: adding %d ms latency %s: %w", ms, stream, err)
	}
	return nil
}

// Addr is the "host:port" clients dial to reach the upstream through the
// link.
func (s *Shaper) Addr() string { return s.addr }

// Link returns the link the Shaper emulates.
func (s *Shaper) Link() Link { return s.link }

// ErrUncapped is returned by Sent on a link without a bandwidth cap, which
// has no htb class to count.
var ErrUncapped = errors.New("wan: the link has no bandwidth cap, so tc counts nothing")

// Sent reports the bytes that crossed the link downstream so far, counted
// by the kernel in the capped class, IP and TCP headers included (about
// 0.1% at loopback's 64 KiB packets).
func (s *Shaper) Sent() (int64, error) {
	if s.tc == "" {
		return 0, ErrUncapped
	}
	return classSent(s.tc)
}

// Close stops the proxy, dropping its connections, and removes the qdisc.
// It is idempotent.
func (s *Shaper) Close() error {
	s.closeOnce.Do(func() {
		s.proxy.Stop()
		if s.tc == "" {
			s.log.Info("wan: link down", "addr", s.addr)
			return
		}
		sent, err := classSent(s.tc)
		s.log.Info("wan: link down", "addr", s.addr, "sent_bytes", sent, "count_err", err)
		s.closeErr = removeHTB(s.tc)
	})
	return s.closeErr
}

// zerologToSlog receives zerolog's JSON events and logs them as warnings.
type zerologToSlog struct{ log *slog.Logger }

func (w zerologToSlog) Write(p []byte) (int, error) {
	var ev map[string]any
	if err := json.Unmarshal(p, &ev); err != nil {
		w.log.Warn("wan: toxiproxy", "event", strings.TrimSpace(string(p)))
		return len(p), nil
	}
	msg, _ := ev["message"].(string)
	delete(ev, "message")
	delete(ev, "level")
	attrs := make([]slog.Attr, 0, len(ev))
	for k, v := range ev {
		attrs = append(attrs, slog.Any(k, v))
	}
	w.log.LogAttrs(context.Background(), slog.LevelWarn, "wan: toxiproxy: "+msg, attrs...)
	return len(p), nil
}
