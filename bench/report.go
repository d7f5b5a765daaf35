package bench

import (
	"fmt"
	"io"
	"strings"
)

// Markdown writes the report as the tables docs/BENCHMARKS.md holds.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Link: %.0f ms round trip, %s; %d CPUs; %s\n\n", r.RTT, rate(r.Bandwidth), r.CPUs, r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintln(w, "| workload | events | files | bytes | needed | ideal s | local disk s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, wl := range r.Workloads {
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %.3f | %.3f |\n", wl.Name, wl.Events, wl.Files, size(wl.Bytes), size(wl.Needed), wl.Ideal, wl.Local)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | strategy | total s | first byte s | over the link | GCS requests | × ideal | × best peer | × local disk |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, row := range r.Rows {
		strategy := row.Strategy
		if row.CopyTime > 0 {
			strategy += fmt.Sprintf(" (copy %.2f s)", row.CopyTime)
		}
		if row.PrefetchFrom != "" {
			strategy += fmt.Sprintf(" (from %s; waste %.0f%%)", row.PrefetchFrom, 100*row.Waste)
		}
		peer := "–"
		if row.XBestPeer > 0 {
			peer = fmt.Sprintf("%.2f (%s)", row.XBestPeer, row.BestPeer)
		}
		fmt.Fprintf(w, "| %s | %s | %.3f | %.3f | %s | %d | %.2f | %s | %.2f |\n", row.Workload, strategy, row.Total, row.TTFB,
			size(row.LinkBytes), row.Requests, row.XIdeal, peer, row.XLocal)
	}
	if len(r.Peers) > 0 {
		fmt.Fprintln(w, "\nPeers, each mounted over the same link and bucket with a fresh cache per workload (their bytes and requests are counted at the link):")
		fmt.Fprintln(w)
		for _, p := range r.Peers {
			if p.Missing != "" {
				fmt.Fprintf(w, "- %s: %s\n", p.Name, p.Missing)
				continue
			}
			fmt.Fprintf(w, "- %s (%s): `%s`\n", strings.TrimSpace(p.Name+" "+p.Version), p.Path, p.Flags)
			for _, e := range p.Errors {
				fmt.Fprintf(w, "  - failed: %s\n", e)
			}
		}
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func rate(bps int64) string {
	if bps <= 0 {
		return "unlimited bandwidth"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0f MB/s", float64(bps)/1e6), ".0")
}

// Markdown writes the soak's figure: failed operations over replays, by
// phase.
func (r *SoakReport) Markdown(w io.Writer, l Link) {
	fmt.Fprintf(w, "Soak: %d rounds × %d concurrent replayers of %v; link %s round trip, %s; %s; %.0f s\n\n",
		r.Rounds, r.Replayers, r.Workloads, l.RTT, rate(l.Bandwidth), r.Started.Format("2006-01-02 15:04 UTC"), r.Wall)
	fmt.Fprintln(w, "| phase | replays | failed replays | operations | failed operations |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, name := range SoakPhases {
		p := r.Phases[name]
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d |\n", name, p.Replays, p.Failed, p.Ops, p.FailedOps)
	}
	fmt.Fprintf(w, "| all | %d | %d | %d | %d |\n", r.Replays, r.Failed, r.Ops, r.FailedOps)
	for _, e := range r.FirstErrors {
		fmt.Fprintf(w, "\n- %s", e)
	}
	fmt.Fprintln(w)
}

// Markdown writes the node daemon's figures, each beside what it is
// measured against in the same run.
func (r *NodeReport) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Node daemon: link %.0f ms round trip, %s; %d CPUs; %s\n\n", r.RTT, rate(r.Bandwidth), r.CPUs, r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "| %d tasks of one job reading %s | total s | over the link | GCS requests | link bytes ÷ one task's |\n", r.Tasks, r.Workload)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	ratio := func(b int64) float64 {
		if r.OneTaskBytes == 0 {
			return 0
		}
		return float64(b) / float64(r.OneTaskBytes)
	}
	fmt.Fprintf(w, "| one after another, standalone `jitfs run` | %.3f | %s | %d | %.3f |\n", r.Sequential.Total, size(r.Sequential.LinkBytes), r.Sequential.Requests, ratio(r.Sequential.LinkBytes))
	fmt.Fprintf(w, "| at once, through one node daemon | %.3f | %s | %d | %.3f |\n\n", r.Concurrent.Total, size(r.Concurrent.LinkBytes), r.Concurrent.Requests, ratio(r.Concurrent.LinkBytes))
	m := r.Memory
	fmt.Fprintf(w, "| memory: %d jobs × %d files listed | value |\n|---|---:|\n", m.Jobs, m.Files)
	fmt.Fprintf(w, "| bench process RSS (node daemon and emulator) | %s |\n| RSS before the node started | %s |\n| Go heap in use | %s |\n| listing time, all jobs | %.2f s |\n| list requests (listings shared between jobs) | %d (%d) |\n\n",
		size(m.RSSBytes), size(m.BaselineRSS), size(m.HeapBytes), m.ListSeconds, m.ListRequests, m.SharedListing)
	s := r.Restart
	fmt.Fprintf(w, "| restart over %d cached and listed objects | value |\n|---|---:|\n", s.Objects)
	fmt.Fprintf(w, "| daemon start (cache scan, metadata check, jobs restored) | %.3f s |\n| start to a task of the job attached and served | %.3f s |\n| list / stat / data requests | %d / %d / %d |\n",
		s.StartSeconds, s.ServeSeconds, s.Lists, s.Stats, s.Reads)
}
