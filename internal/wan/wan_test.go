package wan

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
	"golang.org/x/sync/errgroup"

	"github.com/jitfs/jitfs/internal/testworld"
)

// upstream serves GET /?n=N: N bytes. It stands in for the GCS emulator; the
// link is a TCP proxy and does not care what speaks through it.
func upstream(t testing.TB) string {
	t.Helper()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k, err := w.Write(chunk[:min(n, int64(len(chunk)))])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func startShaper(t testing.TB, upstream string, l Link) *Shaper {
	t.Helper()
	s, err := Start(upstream, l, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatalf("Start(%v): %v", l, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// get fetches n bytes through addr and checks it got them all.
func get(c *http.Client, addr string, n int64) error {
	resp, err := c.Get(fmt.Sprintf("http://%s/?n=%d", addr, n))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return nil
}

// parallelDownload fetches conns x size bytes at once and returns how long
// it took.
func parallelDownload(c *http.Client, addr string, conns int, size int64) (time.Duration, error) {
	var g errgroup.Group
	start := time.Now()
	for range conns {
		g.Go(func() error { return get(c, addr, size) })
	}
	err := g.Wait()
	return time.Since(start), err
}

// roundTrips times n small GETs on a warm connection.
func roundTrips(c *http.Client, addr string, n int) ([]time.Duration, error) {
	if err := get(c, addr, 1); err != nil { // warm: connect once
		return nil, err
	}
	var rtts []time.Duration
	for range n {
		start := time.Now()
		if err := get(c, addr, 1); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts, nil
}

func ideal(bytes int64, rate int64) time.Duration {
	return time.Duration(float64(bytes) / float64(rate) * float64(time.Second))
}

func TestBandwidthCapIsAggregate(t *testing.T) {
	const (
		rate  = 50_000_000
		conns = 4
		size  = 32 << 20
	)
	s := startShaper(t, upstream(t), Link{RTT: 20 * time.Millisecond, Bandwidth: rate})
	elapsed, err := parallelDownload(newClient(t), s.Addr(), conns, size)
	if err != nil {
		t.Fatal(err)
	}
	want := ideal(conns*size, rate)
	t.Logf("%d x %d MiB through a 50 MB/s link in %v: %.3f of the cap", conns, size>>20, elapsed, want.Seconds()/elapsed.Seconds())
	// A per-connection cap would finish in a quarter of the time. The slack
	// is htb's burst and the clocks' granularity. No upper bound on the
	// time: on a busy two-core machine the proxy runs short of CPU before
	// the cap binds; the configured rate is checked exactly instead.
	if elapsed < want*9/10 {
		t.Errorf("%d parallel downloads took %v, faster than the aggregate cap allows (%v)", conns, elapsed, want)
	}
	if c := tcShow(t, mustTC(t), "class"); !strings.Contains(c, "rate 400Mbit ceil 400Mbit") {
		t.Errorf("class for a 50 MB/s cap, want rate 400Mbit: %s", c)
	}
	sent, err := s.Sent()
	if err != nil {
		t.Fatal(err)
	}
	if sent < conns*size {
		t.Errorf("tc counted %d bytes through the link, want at least the %d downloaded", sent, conns*size)
	}
}

func TestRoundTrip(t *testing.T) {
	const rtt = 20 * time.Millisecond
	s := startShaper(t, upstream(t), Link{RTT: rtt, Bandwidth: 50_000_000})
	rtts, err := roundTrips(newClient(t), s.Addr(), 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("small GET round trips through a %v link: min %v, median %v", rtt, rtts[0], rtts[len(rtts)/2])
	if rtts[0] < rtt*9/10 {
		t.Errorf("fastest round trip %v, want at least %v", rtts[0], rtt*9/10)
	}
	// No upper bound on the time: a loaded machine stretches it. That the
	// latency is applied once each way is checked on the toxics below.
	var total int64
	for _, tx := range s.proxy.Toxics.GetToxicArray() {
		w := tx.(*toxics.ToxicWrapper)
		lat, ok := w.Toxic.(*toxics.LatencyToxic)
		if !ok {
			t.Fatalf("unexpected toxic %s", w.Type)
		}
		if lat.Latency != 10 || lat.Jitter != 0 {
			t.Errorf("%s latency %d±%d ms, want 10±0", w.Stream, lat.Latency, lat.Jitter)
		}
		total += lat.Latency
	}
	if total != rtt.Milliseconds() {
		t.Errorf("toxics add up to %d ms, want the %v RTT", total, rtt)
	}
}

func mustTC(t *testing.T) string {
	t.Helper()
	tc, err := findTC()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// tcShow lists lo's qdiscs or classes.
func tcShow(t *testing.T, tc, what string) string {
	t.Helper()
	out, err := exec.Command(tc, what, "show", "dev", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("tc %s show: %v: %s", what, err, out)
	}
	return string(out)
}

func TestCloseRemovesQdiscAndProxy(t *testing.T) {
	s, err := Start(upstream(t), Link{RTT: time.Millisecond, Bandwidth: 10_000_000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q := tcShow(t, mustTC(t), "qdisc"); !strings.Contains(q, "htb") {
		t.Fatalf("no htb qdisc on lo while the link is up: %s", q)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if q := tcShow(t, mustTC(t), "qdisc"); strings.Contains(q, "htb") {
		t.Errorf("htb qdisc left on lo after Close: %s", q)
	}
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		c.Close()
		t.Errorf("proxy %s still accepts connections after Close", s.Addr())
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSecondShaperFailsAndLeavesFirstIntact(t *testing.T) {
	up := upstream(t)
	s := startShaper(t, up, Link{Bandwidth: 10_000_000})
	if s2, err := Start(up, Link{Bandwidth: 10_000_000}, nil); err == nil {
		s2.Close()
		t.Fatal("a second Start in the same namespace succeeded; it would fight over lo's root qdisc")
	}
	if q := tcShow(t, mustTC(t), "qdisc"); !strings.Contains(q, "htb") {
		t.Errorf("the failed second Start removed the first one's qdisc: %s", q)
	}
	if _, err := s.Sent(); err != nil {
		t.Errorf("first Shaper's counter: %v", err)
	}
}

func TestUncappedLinkNeedsNoTC(t *testing.T) {
	tc := mustTC(t)
	t.Setenv("PATH", t.TempDir())
	saved := tcCandidates
	tcCandidates = nil
	t.Cleanup(func() { tcCandidates = saved })

	s := startShaper(t, upstream(t), Link{})
	if err := get(newClient(t), s.Addr(), 3<<20); err != nil {
		t.Fatalf("GET through an uncapped link: %v", err)
	}
	if _, err := s.Sent(); !errors.Is(err, ErrUncapped) {
		t.Errorf("Sent on an uncapped link: %v, want ErrUncapped", err)
	}
	if q := tcShow(t, tc, "qdisc"); strings.Contains(q, "htb") {
		t.Errorf("an uncapped link installed a qdisc: %s", q)
	}
}

func TestMissingTCSaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := tcCandidates
	tcCandidates = []string{"/nonexistent/tc"}
	t.Cleanup(func() { tcCandidates = saved })

	_, err := Start(upstream(t), Link{Bandwidth: 1_000_000}, nil)
	if !errors.Is(err, ErrNoTC) {
		t.Fatalf("Start without tc: %v, want ErrNoTC", err)
	}
	if !strings.Contains(err.Error(), "apt-get install iproute2") {
		t.Errorf("error %q does not say how to install tc", err)
	}
}

// TestCheck runs as root with tc installed, as the package's tests must:
// Check agrees, and names tc once tc is gone.
func TestCheck(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatalf("Check as root with tc: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	saved := tcCandidates
	tcCandidates = []string{"/nonexistent/tc"}
	t.Cleanup(func() { tcCandidates = saved })
	if err := Check(); !errors.Is(err, ErrNoTC) {
		t.Fatalf("Check without tc: %v, want ErrNoTC", err)
	}
}

func TestStartRefusesToShapeTheHost(t *testing.T) {
	t.Setenv(envHostNS, "")
	_, err := Start(upstream(t), Link{Bandwidth: 1_000_000}, nil)
	if !errors.Is(err, ErrNotIsolated) {
		t.Fatalf("Start outside the namespace: %v, want ErrNotIsolated", err)
	}
}

func TestTestsRunInPrivateNamespace(t *testing.T) {
	if !InNamespace() {
		t.Fatal("TestMain's Reexec did not leave the tests in a private namespace")
	}
	host := os.Getenv(envHostNS)
	t.Setenv(envHostNS, "")
	if InNamespace() {
		t.Error("InNamespace without the marker: true, want false")
	}
	mine, _ := netnsID()
	t.Setenv(envHostNS, mine)
	if InNamespace() {
		t.Error("InNamespace with a marker naming the current namespace: true, want false")
	}
	t.Setenv(envHostNS, host)
}

// BenchmarkLink measures the default link (20 ms, 100 MB/s): throughput of
// four parallel downloads as a fraction of the cap, and a small GET's round
// trip. -short downloads less.
func BenchmarkLink(b *testing.B) {
	const conns = 4
	size := int64(32 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	l := DefaultLink()
	s := startShaper(b, upstream(b), l)
	c := newClient(b)
	b.SetBytes(conns * size)
	var total time.Duration
	for b.Loop() {
		elapsed, err := parallelDownload(c, s.Addr(), conns, size)
		if err != nil {
			b.Fatal(err)
		}
		total += elapsed
	}
	b.StopTimer()
	rtts, err := roundTrips(c, s.Addr(), 5)
	if err != nil {
		b.Fatal(err)
	}
	ratio := ideal(conns*size, l.Bandwidth).Seconds() * float64(b.N) / total.Seconds()
	b.ReportMetric(ratio, "cap-ratio")
	b.ReportMetric(float64(rtts[len(rtts)/2])/float64(time.Millisecond), "rtt-ms")
}

// TestUpstreamDownIsLogged checks that Toxiproxy's own errors, which it
// reports through zerolog, reach the Shaper's slog logger.
func TestUpstreamDownIsLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	var logs testworld.Buffer
	s, err := Start(dead, Link{RTT: 2 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := get(newClient(t), s.Addr(), 1); err == nil {
		t.Fatal("GET through a link to a dead upstream succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "Unable to open connection to upstream") {
		if time.Now().After(deadline) {
			t.Fatalf("no upstream error logged; logs: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the upstream error lacks its level or cause: %s", logs.String())
	}
}
