package wan

import (
	"testing"
	"time"
)

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"100MB/s", 100_000_000},
		{"100 MB/s", 100_000_000},
		{"100MB", 100_000_000},
		{"1Gbit", 125_000_000},
		{"1Gbit/s", 125_000_000},
		{"800Mbit", 100_000_000},
		{"800Mb/s", 100_000_000},
		{"1.5GB/s", 1_500_000_000},
		{"64MiB/s", 64 << 20},
		{"10kB/s", 10_000},
		{"12500000", 12_500_000},
		{"0", 0},
		{"unlimited", 0},
		{"none", 0},
	} {
		got, err := ParseBandwidth(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "fast", "MB/s", "-5MB/s", "100Mbps", "100MBps", "100 furlongs", "1e30GB/s", "1..2MB"} {
		if got, err := ParseBandwidth(in); err == nil {
			t.Errorf("ParseBandwidth(%q) = %d, want an error", in, got)
		}
	}
}

func TestLinkValidate(t *testing.T) {
	for _, tc := range []struct {
		l  Link
		ok bool
	}{
		{DefaultLink(), true},
		{Link{}, true},
		{Link{RTT: -time.Millisecond}, false},
		{Link{Bandwidth: -1}, false},
		{Link{Bandwidth: 1 << 62}, false},
	} {
		if err := tc.l.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok=%v", tc.l, err, tc.ok)
		}
	}
}

func TestLinkLatencySplit(t *testing.T) {
	for _, tc := range []struct {
		rtt      time.Duration
		up, down int64
	}{
		{20 * time.Millisecond, 10, 10},
		{15 * time.Millisecond, 7, 8},
		{1400 * time.Microsecond, 0, 1},
		{0, 0, 0},
	} {
		up, down := Link{RTT: tc.rtt}.latencyMS()
		if up != tc.up || down != tc.down {
			t.Errorf("RTT %v split %d+%d ms, want %d+%d", tc.rtt, up, down, tc.up, tc.down)
		}
	}
}

func TestLinkString(t *testing.T) {
	for _, tc := range []struct {
		l    Link
		want string
	}{
		{DefaultLink(), "20ms RTT, 100 MB/s"},
		{Link{RTT: 5 * time.Millisecond, Bandwidth: 12_500_000}, "5ms RTT, 12.5 MB/s"},
		{Link{}, "0s RTT, unlimited"},
	} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.l, got, tc.want)
		}
	}
}
