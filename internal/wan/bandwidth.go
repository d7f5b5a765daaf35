package wan

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// bandwidthUnits maps a unit to bytes per second. Byte units are upper-case
// B, bit units spell "bit" or a lower-case b, as in networking. "bps"
// forms are rejected: "Mbps" means megabits to most people and megabytes to
// tc, and a factor of 8 is too easy to get wrong silently.
var bandwidthUnits = map[string]float64{
	"": 1, "B": 1,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"bit": 1.0 / 8, "b": 1.0 / 8,
	"kbit": 1e3 / 8, "Kbit": 1e3 / 8, "Mbit": 1e6 / 8, "Gbit": 1e9 / 8, "Tbit": 1e12 / 8,
	"kb": 1e3 / 8, "Kb": 1e3 / 8, "Mb": 1e6 / 8, "Gb": 1e9 / 8, "Tb": 1e12 / 8,
}

// ParseBandwidth parses a bandwidth into bytes per second: "100MB/s",
// "800Mbit", "1Gbit/s", "1Gb/s", "64MiB/s", "12500000" (bytes per second).
// Prefixes are decimal (M = 10^6) except the binary Ki, Mi, Gi, Ti. "0",
// "unlimited" and "none" mean no cap and return 0.
func ParseBandwidth(s string) (int64, error) {
	t := strings.TrimSpace(s)
	switch t {
	case "unlimited", "none":
		return 0, nil
	}
	t = strings.TrimSuffix(t, "/s")
	if strings.HasSuffix(strings.ToLower(t), "ps") {
		return 0, fmt.Errorf("wan: bandwidth %q: write bytes as MB/s or bits as Mbit, not \"bps\", which tools read differently", s)
	}
	i := strings.LastIndexAny(t, "0123456789.") + 1
	num, unit := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i:])
	mult, ok := bandwidthUnits[unit]
	if !ok {
		return 0, fmt.Errorf("wan: bandwidth %q: unknown unit %q (use B/s, kB/s, MB/s, GB/s, MiB/s, kbit, Mbit, Gbit)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("wan: bandwidth %q: want a non-negative number and a unit, like 100MB/s or 800Mbit", s)
	}
	bps := v * mult
	if bps >= math.MaxInt64/8 {
		return 0, fmt.Errorf("wan: bandwidth %q is too large", s)
	}
	return int64(bps), nil
}

// formatBandwidth renders bytes per second for logs and Link.String.
func formatBandwidth(bps int64) string {
	if bps == 0 {
		return "unlimited"
	}
	v, unit := float64(bps), "B/s"
	for _, u := range []string{"kB/s", "MB/s", "GB/s", "TB/s"} {
		if v < 1000 {
			break
		}
		v, unit = v/1000, u
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + unit
}
