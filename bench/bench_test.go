package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/trace"
	"gonum.org/v1/plot/vg/vgimg"
)

func direct(up string) (string, func() error, error) { return up, func() error { return nil }, nil }

func TestWorkloadShape(t *testing.T) {
	h := trace.Header{Format: trace.Format, Root: "/show"}
	evs := []trace.Event{
		{Op: trace.OpStat, Path: "/show/tex", Size: 4096}, // a directory stat'ed without a Dir flag
		{Op: trace.OpOpen, Path: "/show/tex/a.exr", Size: 1000},
		{Op: trace.OpRead, Path: "/show/tex/a.exr", Off: 0, Len: 600, N: 600},
		{Op: trace.OpRead, Path: "/show/tex/a.exr", Off: 400, Len: 600, N: 600},
		{Op: trace.OpRead, Path: "/show/cache/b.mdd", Off: 5000, Len: 100, N: 100}, // no stat: size from the read
		{Op: trace.OpMmap, Path: "/show/lib.blend", Off: 0, Len: 8192},
		{Op: trace.OpStat, Path: "/show/lib.blend", Size: 5000},
		{Op: trace.OpStat, Path: "/show/missing.exr", Err: "ENOENT"},
		{Op: trace.OpStat, Path: "/usr/lib/x.so", Size: 1},
	}
	w, err := NewWorkload("t", h, evs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"tex/a.exr": 1000, "cache/b.mdd": 5100, "lib.blend": 5000}
	if len(w.Files) != len(want) {
		t.Fatalf("files = %v, want %v", w.Files, want)
	}
	for f, s := range want {
		if w.Files[f] != s {
			t.Errorf("size of %s = %d, want %d", f, w.Files[f], s)
		}
	}
	// 1000 (overlapping reads) + 100 + 5000 (mmap clipped to the size).
	if w.Needed != 6100 {
		t.Errorf("needed = %d, want 6100", w.Needed)
	}
	show, err := ReadShow("tex/a.exr\t1000\ntex/b.exr\t77\ntex\t5\n# comment\n")
	if err != nil {
		t.Fatal(err)
	}
	w.AddShow(show)
	if w.Files["tex/b.exr"] != 77 || len(w.Files) != 4 || w.Needed != 6100 {
		t.Errorf("after AddShow: %v, needed %d", w.Files, w.Needed)
	}
	for _, bad := range []string{"a\n", "/abs\t1\n", "../x\t1\n", "a\t-1\n", "a/./b\t1\n"} {
		if _, err := ReadShow(strings.ReplaceAll(bad, "\\", "\\")); err == nil {
			t.Errorf("ReadShow(%q) accepted", bad)
		}
	}
	if _, err := NewWorkload("t", trace.Header{Root: "/"}, evs); err == nil {
		t.Error("a trace without a data root was accepted")
	}
}

func TestSyntheticWorkloads(t *testing.T) {
	if w := SmallFiles(100, 1000, 16); len(w.Files) != 100 || w.Needed != 100*1000 {
		t.Errorf("small files: %d files, %d needed", len(w.Files), w.Needed)
	}
	if w := SequentialLarge(10 << 20); w.Needed != 10<<20 || w.Bytes() != 10<<20 {
		t.Errorf("sequential: needed %d bytes %d", w.Needed, w.Bytes())
	}
	if w := RandomSmall(64<<20, 100); w.Needed > 100*4096 || w.Needed < 90*4096 {
		t.Errorf("random: needed %d", w.Needed)
	}
	if a, b := Content("x", 100), Content("x", 100); string(a) != string(b) {
		t.Error("content is not deterministic")
	}
}

// TestRunMatrix runs the whole matrix on real mounts against the emulator
// (without the emulated WAN, which needs a network namespace; the command's
// own test covers that) and checks what each strategy must cost.
func TestRunMatrix(t *testing.T) {
	wls := []*Workload{SmallFiles(60, 20000, 4), SequentialLarge(12 << 20), RandomSmall(32<<20, 40)}
	rep, err := Run(context.Background(), Config{Workloads: wls, Network: direct, WorkDir: t.TempDir(),
		Link: Link{Bandwidth: 100e6}})
	if err != nil {
		t.Fatal(err)
	}
	// pre-sync, cold, warm, restarted, cold learned, cold + prefetch, cold
	// with no speculation.
	const perWorkload = 7
	if len(rep.Rows) != perWorkload*len(wls) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), perWorkload*len(wls))
	}
	for i, row := range rep.Rows {
		w := wls[i/perWorkload]
		if row.Read < w.Needed {
			t.Errorf("%s/%s read %d bytes, workload needs %d", row.Workload, row.Strategy, row.Read, w.Needed)
		}
		switch row.Strategy {
		case "pre-sync":
			if row.LinkBytes != w.Bytes() || row.CopyTime <= 0 {
				t.Errorf("pre-sync of %s moved %d bytes (want %d), copy %v s", w.Name, row.LinkBytes, w.Bytes(), row.CopyTime)
			}
		case "jitfs cold", "jitfs cold, no speculation", "jitfs cold, learned":
			if row.LinkBytes < w.Needed || row.Requests == 0 {
				t.Errorf("cold %s: %d bytes, %d requests", w.Name, row.LinkBytes, row.Requests)
			}
		case "jitfs warm", "jitfs restarted":
			// Data comes from the cache; a restarted daemon re-lists
			// directories (metadata is not persisted) but fetches no bytes.
			if row.LinkBytes != 0 {
				t.Errorf("%s %s fetched %d bytes", row.Strategy, w.Name, row.LinkBytes)
			}
			if row.Strategy == "jitfs warm" && row.Requests != 0 {
				t.Errorf("warm %s made %d requests", w.Name, row.Requests)
			}
		case "jitfs cold + prefetch":
			// The manifest is the workload's own trace: every needed byte
			// is fetched, by the engine or by the replay's reads.
			if row.LinkBytes < w.Needed || row.PrefetchFrom != w.Name {
				t.Errorf("prefetch %s: %d bytes from %q", w.Name, row.LinkBytes, row.PrefetchFrom)
			}
		default:
			t.Errorf("unknown strategy %q", row.Strategy)
		}
	}
	// The random workload is where lazy fetching pays: far less than the
	// object crosses the link.
	for _, row := range rep.Rows {
		if row.Workload == "random-small" && row.Strategy == "jitfs cold" && row.LinkBytes >= 32<<20/2 {
			t.Errorf("random reads fetched %d bytes of a 32 MiB object", row.LinkBytes)
		}
	}
	var md stringsBuilder
	rep.Markdown(&md)
	if len(md) == 0 {
		t.Error("empty markdown")
	}
}

type stringsBuilder []byte

func (s *stringsBuilder) Write(p []byte) (int, error) { *s = append(*s, p...); return len(p), nil }

// TestRunPeers runs the matrix with the peers on one small workload: each
// installed peer gets a cold and a warm row whose replay read what the
// workload reads and whose bytes the link counted, and the jitfs rows are
// compared with the fastest of them. On a machine without a peer the
// report says so, as it does to a user.
func TestRunPeers(t *testing.T) {
	peers, err := FindPeers(PeerNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := SmallFiles(40, 20000, 4)
	rep, err := Run(context.Background(), Config{Workloads: []*Workload{w}, Network: direct, WorkDir: t.TempDir(),
		Link: Link{Bandwidth: 100e6}, Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	var md stringsBuilder
	rep.Markdown(&md)
	rows := map[string]Row{}
	for _, r := range rep.Rows {
		rows[r.Strategy] = r
	}
	local := rows["pre-sync"]
	best := map[string]float64{}
	installed := 0
	for i, p := range peers {
		info := rep.Peers[i]
		if p.Path == "" {
			if info.Missing != NotInstalled || !strings.Contains(string(md), "- "+p.Name+": "+NotInstalled) {
				t.Errorf("%s is not installed, the report says %+v:\n%s", p.Name, info, md)
			}
			for _, r := range rep.Rows {
				if isPeer(r.Strategy) && strings.HasPrefix(r.Strategy, p.Name) {
					t.Errorf("row %q for a peer that is not installed", r.Strategy)
				}
			}
			continue
		}
		installed++
		if len(info.Errors) > 0 || info.Version == "" {
			t.Fatalf("%s: %+v", p.Name, info)
		}
		for _, ph := range []string{"cold", "warm"} {
			r, ok := rows[p.Name+" "+ph]
			if !ok {
				t.Fatalf("no %s %s row:\n%s", p.Name, ph, md)
			}
			t.Logf("%s %s: %.3f s, %d B, %d requests", p.Name, ph, r.Total, r.LinkBytes, r.Requests)
			if r.Read != local.Read || r.Ops != local.Ops || r.Total <= 0 || r.XIdeal <= 0 {
				t.Errorf("%s %s read %d bytes in %d ops (local disk: %d in %d), %.3f s", p.Name, ph, r.Read, r.Ops, local.Read, local.Ops, r.Total)
			}
			if ph == "cold" && (r.LinkBytes < w.Needed || r.Requests == 0) {
				t.Errorf("%s cold: %d bytes over the link (the workload needs %d), %d requests", p.Name, r.LinkBytes, w.Needed, r.Requests)
			}
			if ph == "warm" && r.LinkBytes > rows[p.Name+" cold"].LinkBytes {
				t.Errorf("%s warm moved %d bytes, more than cold", p.Name, r.LinkBytes)
			}
			if b, ok := best[ph]; !ok || r.Total < b {
				best[ph] = r.Total
			}
		}
	}
	for _, r := range rep.Rows {
		if !strings.HasPrefix(r.Strategy, "jitfs ") {
			continue
		}
		if installed == 0 {
			if r.XBestPeer != 0 {
				t.Errorf("%s: × best peer %v without peers", r.Strategy, r.XBestPeer)
			}
			continue
		}
		if want := r.Total / best[phase(r.Strategy)]; r.XBestPeer != want || r.BestPeer == "" {
			t.Errorf("%s: × best peer %v (%s), want %v", r.Strategy, r.XBestPeer, r.BestPeer, want)
		}
	}
	t.Logf("\n%s", md)
}

// TestPeersMissingOrFailing is a machine without gcsfuse on PATH, and with
// an rclone that cannot mount. The bench still runs, with no peer rows and
// no × best peer; its report says how to install the missing peer and why
// the other has no rows.
func TestPeersMissingOrFailing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	peers, err := FindPeers(PeerNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Path != "" {
			t.Fatalf("%s found on an empty PATH: %s", p.Name, p.Path)
		}
	}
	if peers, err = FindPeers(PeerNames, map[string]string{"rclone": "/bin/false"}); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{Workloads: []*Workload{SmallFiles(5, 1000, 1)}, Network: direct,
		WorkDir: t.TempDir(), Link: Link{Bandwidth: 100e6}, Peers: peers, NoSpeculation: true})
	if err != nil {
		t.Fatal(err)
	}
	var md stringsBuilder
	rep.Markdown(&md)
	for _, want := range []string{"- gcsfuse: not installed (scripts/install-peers.sh installs it)\n",
		"- rclone (/bin/false): `", "  - failed: rclone on small-files-5x1: mount: exited before mounting (exit status 1)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, r := range rep.Rows {
		if isPeer(r.Strategy) || r.XBestPeer != 0 {
			t.Errorf("row %+v on a machine without peers", r)
		}
	}
	if len(rep.Rows) != 5 {
		t.Errorf("%d rows, want pre-sync and four jitfs rows", len(rep.Rows))
	}
	if _, err := FindPeers([]string{"s3fs"}, nil); err == nil || !strings.Contains(err.Error(), "unknown peer") {
		t.Errorf("an unknown peer: %v", err)
	}
	if _, err := FindPeers([]string{"rclone"}, map[string]string{"rclone": "/nonexistent/rclone"}); err == nil {
		t.Error("a missing --rclone binary was accepted")
	}
}

// TestPlot draws a small report as SVG and PNG and reads both back: the
// SVG is XML whose text names every workload and strategy, the PNG decodes
// at the chart's size.
func TestPlot(t *testing.T) {
	rep := &Report{RTT: 20, Bandwidth: 100e6, Workloads: []WorkloadInfo{{Name: "small-files-2000x1", Ideal: 1.3}, {Name: "povray_balcony", Ideal: 0.05}}}
	for _, r := range []Row{
		{Workload: "small-files-2000x1", Strategy: "pre-sync", Total: 3.8},
		{Workload: "small-files-2000x1", Strategy: "jitfs cold", Total: 2.9},
		{Workload: "small-files-2000x1", Strategy: "jitfs warm", Total: 0.4},
		{Workload: "small-files-2000x1", Strategy: "gcsfuse cold", Total: 50.3},
		{Workload: "small-files-2000x1", Strategy: "rclone cold", Total: 49.3},
		{Workload: "povray_balcony", Strategy: "jitfs cold", Total: 0.107},
		{Workload: "povray_balcony", Strategy: "jitfs warm", Total: 0.004},
	} {
		for _, w := range rep.Workloads {
			if w.Name == r.Workload {
				r.XIdeal = r.Total / w.Ideal
			}
		}
		rep.Rows = append(rep.Rows, r)
	}
	dir := t.TempDir()
	svgFile, pngFile := filepath.Join(dir, "bench.svg"), filepath.Join(dir, "bench.PNG")
	for _, f := range []string{svgFile, pngFile} {
		if err := rep.WritePlot(f); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(svgFile)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	dec := xml.NewDecoder(bytes.NewReader(b))
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inText = tok.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				texts = append(texts, string(tok))
			}
		}
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"small-files-2000x1", "povray_balcony", "pre-sync", "jitfs cold", "jitfs warm", "gcsfuse cold",
		"rclone cold", "link-limited ideal", "50.3 s", "0.004 s", "time ÷ link-limited ideal"} {
		if !strings.Contains(all, want) {
			t.Errorf("the SVG's text lacks %q:\n%s", want, all)
		}
	}
	f, err := os.Open(pngFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	w, h := rep.PlotSize()
	if got, want := img.Bounds().Size(), image.Pt(int(w.Dots(vgimg.DefaultDPI)+0.5), int(h.Dots(vgimg.DefaultDPI)+0.5)); got != want {
		t.Errorf("PNG is %v, want %v", got, want)
	}
	if err := rep.WritePlot(filepath.Join(dir, "bench.gif")); err == nil {
		t.Error("a .gif chart was accepted")
	}
	if err := (&Report{}).WritePlot(filepath.Join(dir, "empty.svg")); err == nil {
		t.Error("an empty report was drawn")
	}
}
