package bench

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart geometry. Each bar gets a fixed height, so a chart of many
// workloads grows downwards instead of squeezing its bars and labels.
const (
	PlotWidth   = 10 * vg.Inch
	plotLegend  = 2.4 * vg.Inch // the strategies' legend, right of the bars
	plotBar     = 0.15 * vg.Inch
	plotGap     = 0.2 * vg.Inch // between two workloads' groups
	plotMargins = 1.4 * vg.Inch // title and x axis
)

// PlotFormat tells a chart file's format from its name: "svg" or "png".
func PlotFormat(file string) (string, error) {
	switch ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(file), ".")); ext {
	case "svg", "png":
		return ext, nil
	}
	return "", fmt.Errorf("bench: chart %q: name it .svg or .png", file)
}

// PlotSize is the size of r's chart.
func (r *Report) PlotSize() (w, h vg.Length) {
	_, strategies := r.plotData()
	group := vg.Length(len(strategies))*plotBar + plotGap
	return PlotWidth, max(3*vg.Inch, vg.Length(len(r.Workloads))*group+plotMargins)
}

// WritePlot draws r's chart into file, in the format its name says.
func (r *Report) WritePlot(file string) error {
	format, err := PlotFormat(file)
	if err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := r.Plot(f, format); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Plot draws r as grouped horizontal bars: one group per workload, one bar
// per strategy, its length the row's time ÷ the workload's link-limited
// ideal on a log scale (so that a 0.1 s trace and a 50 s tree of small
// files share one axis, and 1 is the link's limit), labelled with the time
// in seconds. format is "svg" or "png".
func (r *Report) Plot(w io.Writer, format string) error {
	if len(r.Rows) == 0 {
		return errors.New("bench: no rows to plot")
	}
	bars, strategies := r.plotData()
	p := plot.New()
	p.Title.Text = fmt.Sprintf("jitfs bench: %.0f ms round trip, %s; %s", r.RTT, rate(r.Bandwidth), r.Started.Format("2006-01-02 15:04 UTC"))
	p.X.Label.Text = "time ÷ link-limited ideal (log scale; bars labelled in seconds)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}

	// The first workload on top: nominal positions count upwards.
	n := len(r.Workloads)
	names := make([]string, n)
	for i, wl := range r.Workloads {
		names[n-1-i] = wl.Name
	}
	p.NominalY(names...)
	lo, hi := math.Inf(1), 1.0
	for _, g := range bars.x {
		for _, v := range g {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	// Just below a power of ten, so that gonum's log ticks, which truncate
	// the logarithm of the axis's minimum, label that power.
	bars.base = math.Pow(10, math.Floor(math.Log10(math.Min(lo, 1)/1.2))) * 0.999
	bars.top = hi * 4 // room for the labels
	bars.colors = make([]color.Color, len(strategies))
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	for j, s := range strategies {
		bars.colors[j] = strategyColor(s, j)
		legend.Add(s, swatch{bars.colors[j]})
	}
	bars.label = p.Y.Tick.Label
	bars.label.Font.Size = 7
	bars.label.XAlign, bars.label.YAlign = draw.XLeft, draw.YCenter
	ideal, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.5}, {X: 1, Y: float64(n) - 0.5}})
	if err != nil {
		return err
	}
	ideal.Color = color.Gray{Y: 90}
	ideal.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(ideal, bars) // the bars' labels over the line
	legend.Add("link-limited ideal", ideal)

	width, height := r.PlotSize()
	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		c = vgsvg.New(width, height)
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.New(width, height)}
	default:
		return fmt.Errorf("bench: chart format %q: want svg or png", format)
	}
	dc := draw.New(c)
	p.Draw(draw.Crop(dc, 0.1*vg.Inch, -plotLegend, 0, 0))
	legend.Draw(draw.Crop(dc, width-plotLegend+0.15*vg.Inch, 0, 0, -0.4*vg.Inch))
	_, err = c.WriteTo(w)
	return err
}

// plotData arranges the rows by workload (in report order) and strategy
// (in order of first appearance).
func (r *Report) plotData() (*ratioBars, []string) {
	var strategies []string
	col := map[string]int{}
	for _, row := range r.Rows {
		if _, ok := col[row.Strategy]; !ok {
			col[row.Strategy] = len(strategies)
			strategies = append(strategies, row.Strategy)
		}
	}
	n := len(r.Workloads)
	b := &ratioBars{x: make([][]float64, n), secs: make([][]float64, n)}
	at := map[string]int{}
	for i, wl := range r.Workloads {
		at[wl.Name] = n - 1 - i
		b.x[n-1-i] = make([]float64, len(strategies))
		b.secs[n-1-i] = make([]float64, len(strategies))
	}
	for _, row := range r.Rows {
		if i, ok := at[row.Workload]; ok {
			b.x[i][col[row.Strategy]] = row.XIdeal
			b.secs[i][col[row.Strategy]] = row.Total
		}
	}
	return b, strategies
}

// ratioBars draws horizontal bars from the left edge of a log axis, which
// gonum's bar chart cannot: its bars start at 0.
type ratioBars struct {
	x, secs   [][]float64 // [nominal y][strategy]; 0 when the row is missing
	colors    []color.Color
	base, top float64
	label     draw.TextStyle
}

func (b *ratioBars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	unit := trY(1) - trY(0)
	for i, g := range b.x {
		h := unit * 0.9 / vg.Length(len(g))
		top := trY(float64(i)) + unit*0.45
		for j, v := range g {
			if v <= 0 {
				continue
			}
			y1 := top - vg.Length(j)*h
			y0 := y1 - h*0.85
			x0, x1 := trX(b.base), trX(v)
			c.FillPolygon(b.colors[j], c.ClipPolygonX([]vg.Point{{X: x0, Y: y0}, {X: x0, Y: y1}, {X: x1, Y: y1}, {X: x1, Y: y0}}))
			c.FillText(b.label, vg.Point{X: x1 + vg.Points(2), Y: (y0 + y1) / 2}, seconds(b.secs[i][j]))
		}
	}
}

func (b *ratioBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	return b.base, b.top, -0.5, float64(len(b.x)) - 0.5
}

func seconds(s float64) string {
	switch {
	case s >= 10:
		return fmt.Sprintf("%.1f s", s)
	case s >= 0.1:
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.3f s", s)
}

// strategyColor gives each family of strategies its hue: jitfs blues and
// greens, pre-sync grey, gcsfuse orange, rclone red; warm rows lighter.
func strategyColor(s string, i int) color.Color {
	switch s {
	case "pre-sync":
		return color.RGBA{R: 140, G: 140, B: 140, A: 255}
	case "jitfs cold":
		return color.RGBA{R: 31, G: 100, B: 180, A: 255}
	case "jitfs warm":
		return color.RGBA{R: 130, G: 180, B: 230, A: 255}
	case "jitfs restarted":
		return color.RGBA{R: 60, G: 160, B: 170, A: 255}
	case "jitfs cold + prefetch":
		return color.RGBA{R: 44, G: 150, B: 60, A: 255}
	case "jitfs cold, learned":
		return color.RGBA{R: 90, G: 60, B: 170, A: 255}
	case "jitfs cold, no speculation":
		return color.RGBA{R: 20, G: 40, B: 100, A: 255}
	case "gcsfuse cold":
		return color.RGBA{R: 235, G: 120, B: 20, A: 255}
	case "gcsfuse warm":
		return color.RGBA{R: 250, G: 190, B: 120, A: 255}
	case "rclone cold":
		return color.RGBA{R: 200, G: 40, B: 40, A: 255}
	case "rclone warm":
		return color.RGBA{R: 240, G: 140, B: 140, A: 255}
	}
	return plotutil.Color(i)
}

// swatch is a legend's filled square.
type swatch struct{ c color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.c, []vg.Point{c.Min, {X: c.Min.X, Y: c.Max.Y}, c.Max, {X: c.Max.X, Y: c.Min.Y}})
}
