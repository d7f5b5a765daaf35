package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/jitfs/jitfs/hooks"
)

// The progress `jitfs prefetch --wait` and `jitfs flush --wait` show on
// stderr while they wait (stdout keeps the command's result, its JSON
// clean): a bar redrawn in place on a terminal, and on anything else (a
// render log) a plain line every progressEvery and a last one at the end,
// since a log of redraws is unreadable and a line per poll floods it.

// How often the daemon is asked, and how often a plain line is written.
// Variables so the tests can run a short wait through several lines.
var (
	progressPoll  = 500 * time.Millisecond
	progressEvery = 5 * time.Second
)

// rateWindow is how far back the rate is measured: long enough to smooth
// the steps of whole files arriving, short enough to follow a link that
// slowed down.
const rateWindow = 10 * time.Second

// progressSnap is one poll's view of a wait, prefetch's or flush's.
type progressSnap struct {
	Files, FilesDone int
	Missing, Failed  int
	// Bytes is the total of the files whose size is known; BytesKnown says
	// every size is.
	Bytes, BytesDone int64
	BytesKnown       bool
	Slowest          *slowItem
}

// slowItem is the pending file the command has waited on longest.
type slowItem struct {
	Path  string
	State string // flush: the output's state
	// Done of Size bytes have moved; Size is 0 while unknown.
	Done, Size int64
	Age        time.Duration
}

type rateSample struct {
	at    time.Time
	bytes int64
	files int
}

// progress shows a wait's progress on w.
type progress struct {
	verb  string // "jitfs prefetch"
	w     io.Writer
	now   func() time.Time
	cols  int                      // the terminal's width; 0: not a terminal
	bar   *progressbar.ProgressBar // nil: plain lines
	start time.Time
	// last is when the last plain line was written.
	last    time.Time
	samples []rateSample
	// seen is the furthest progress shown: a file whose fetch failed
	// takes its partial bytes back, and the numbers shown never go back.
	seen  progressSnap
	shown bool
}

// newProgress returns a reporter writing to w: a bar when w is a
// terminal, plain lines otherwise.
func newProgress(verb string, w io.Writer, now func() time.Time) *progress {
	p := &progress{verb: verb, w: w, now: now, start: now()}
	p.last = p.start
	if isTerminal(w) {
		cols, _, err := term.GetSize(int(w.(*os.File).Fd()))
		if err != nil || cols <= 0 {
			cols = 80
		}
		p.newBar(cols)
	}
	return p
}

// newBar makes p draw a bar on a terminal cols wide.
func (p *progress) newBar(cols int) {
	p.cols = cols
	// The bar draws only itself and its percentage: rate, time left and
	// the rest are measured here, on p's clock, and shown as its
	// description after it.
	p.bar = progressbar.NewOptions64(1000,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(20),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetTheme(progressbar.ThemeASCII),
	)
}

// update shows s: a redrawn bar, or a plain line when progressEvery has
// passed since the last.
func (p *progress) update(s progressSnap) {
	now := p.now()
	s = p.sample(s, now)
	if p.bar != nil {
		p.draw(s, p.text(s, now, false))
		return
	}
	if now.Sub(p.last) >= progressEvery {
		p.last = now
		fmt.Fprintf(p.w, "%s: %s\n", p.verb, p.text(s, now, false))
	}
}

// finish shows the last state, s, and leaves the terminal's cursor on a
// line of its own for the command's result.
func (p *progress) finish(s progressSnap) {
	now := p.now()
	s = p.sample(s, now)
	line := p.text(s, now, true)
	if p.bar != nil {
		p.draw(s, line)
		io.WriteString(p.w, "\n")
		return
	}
	fmt.Fprintf(p.w, "%s: %s\n", p.verb, line)
}

func (p *progress) draw(s progressSnap, line string) {
	// A line longer than the terminal wraps, and a wrapped bar redraws as
	// a new line each time: the description gives way first.
	if room := p.cols - 20 - 10; len(line) > room {
		line = line[:max(room-1, 0)] + "~"
	}
	p.bar.Set64(int64(1000 * fraction(s)))
	p.bar.Describe(line)
}

// fraction is how far s is, by bytes once every size is known, else by
// files.
func fraction(s progressSnap) float64 {
	switch {
	case s.BytesKnown && s.Bytes > 0:
		return min(float64(s.BytesDone)/float64(s.Bytes), 1)
	case s.Files > 0:
		return min(float64(s.FilesDone+s.Missing+s.Failed)/float64(s.Files), 1)
	}
	return 0
}

// sample records s, as shown, for the rate.
func (p *progress) sample(s progressSnap, now time.Time) progressSnap {
	s = p.monotonic(s)
	p.samples = append(p.samples, rateSample{at: now, bytes: s.BytesDone, files: s.FilesDone})
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= rateWindow {
		p.samples = p.samples[1:]
	}
	return s
}

// monotonic keeps the counts of done work from going back.
func (p *progress) monotonic(s progressSnap) progressSnap {
	if p.shown {
		s.FilesDone = max(s.FilesDone, p.seen.FilesDone)
		s.BytesDone = max(s.BytesDone, p.seen.BytesDone)
		if s.Bytes == 0 && !s.BytesKnown {
			s.Bytes, s.BytesKnown = p.seen.Bytes, p.seen.BytesKnown
		}
	}
	if s.BytesKnown {
		s.BytesDone = min(s.BytesDone, s.Bytes)
	}
	p.seen, p.shown = s, true
	return s
}

// text is the progress in words: files and bytes done, the rate, the
// time left (or, at the end, taken) and the slowest file still pending.
func (p *progress) text(s progressSnap, now time.Time, final bool) string {
	parts := []string{fmt.Sprintf("%d/%d files", s.FilesDone, s.Files)}
	if s.Bytes > 0 || s.BytesKnown {
		of := size(s.Bytes)
		if !s.BytesKnown {
			of = ">=" + of
		}
		parts = append(parts, size(s.BytesDone)+"/"+of)
	}
	if s.Missing > 0 {
		parts = append(parts, fmt.Sprintf("%d missing", s.Missing))
	}
	if s.Failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", s.Failed))
	}
	bytesRate, filesRate := p.rates(now, final)
	if bytesRate > 0 {
		parts = append(parts, size(int64(bytesRate))+"/s")
	}
	switch {
	case final:
		parts = append(parts, "in "+span(now.Sub(p.start)))
	case s.BytesKnown && bytesRate > 0:
		parts = append(parts, span(time.Duration(float64(s.Bytes-s.BytesDone)/bytesRate*float64(time.Second)))+" left")
	case filesRate > 0:
		left := s.Files - s.FilesDone - s.Missing - s.Failed
		parts = append(parts, span(time.Duration(float64(left)/filesRate*float64(time.Second)))+" left")
	}
	if sl := s.Slowest; sl != nil {
		var what []string
		if sl.State != "" {
			what = append(what, sl.State)
		}
		switch {
		case sl.Size > 0 && sl.Done > 0:
			what = append(what, size(sl.Done)+"/"+size(sl.Size))
		case sl.Size > 0:
			what = append(what, size(sl.Size))
		}
		what = append(what, span(sl.Age))
		parts = append(parts, fmt.Sprintf("slowest: %s (%s)", sl.Path, strings.Join(what, ", ")))
	}
	return strings.Join(parts, ", ")
}

// rates are bytes and files per second over the last rateWindow, or, at
// the end, over the whole wait.
func (p *progress) rates(now time.Time, final bool) (bytesRate, filesRate float64) {
	if len(p.samples) == 0 {
		return 0, 0
	}
	first, last := p.samples[0], p.samples[len(p.samples)-1]
	if final {
		first = rateSample{at: p.start}
		last.at = now
	}
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	return float64(last.bytes-first.bytes) / secs, float64(last.files-first.files) / secs
}

// span is a duration as the progress line writes it: "14 s", "3 min 20
// s", "2 h 05 min".
func span(d time.Duration) string {
	secs := int64(math.Round(max(d, 0).Seconds()))
	switch {
	case secs < 60:
		return fmt.Sprintf("%d s", secs)
	case secs < 3600:
		return fmt.Sprintf("%d min %02d s", secs/60, secs%60)
	}
	return fmt.Sprintf("%d h %02d min", secs/3600, secs/60%60)
}

// watch runs call, showing on p what poll reports every progressPoll until
// call returns; poll's false means there is nothing to show yet.
func watch[T any](ctx context.Context, p *progress, call func() (T, error), poll func(context.Context) (progressSnap, bool)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call()
		done <- result{v, err}
	}()
	tick := time.NewTicker(progressPoll)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r.v, r.err
		case <-tick.C:
			// A poll that hangs must not hold the command's answer for
			// long after call returned.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, ok := poll(pctx)
			cancel()
			if ok {
				p.update(s)
			}
		}
	}
}

// prefetchWatched sends req and, when show is set, shows the request's
// progress on w until the daemon answers. The request carries an id, the
// client's own unless given, by which its progress is found in the
// daemon's status among other hooks' waits.
func prefetchWatched(ctx context.Context, cl *hooks.Client, req hooks.PrefetchRequest, show bool, w io.Writer) (hooks.PrefetchReply, error) {
	if !show {
		return cl.Prefetch(ctx, req)
	}
	if req.RequestID == "" {
		req.RequestID = fmt.Sprintf("jitfs-prefetch-%d-%08x", os.Getpid(), rand.Uint32())
	}
	p := newProgress("jitfs prefetch", w, time.Now)
	rep, err := watch(ctx, p, func() (hooks.PrefetchReply, error) { return cl.Prefetch(ctx, req) },
		func(ctx context.Context) (progressSnap, bool) {
			st, err := cl.Status(ctx)
			if err != nil {
				return progressSnap{}, false
			}
			for _, wp := range st.Waits {
				if wp.RequestID == req.RequestID {
					return prefetchSnap(wp), true
				}
			}
			return progressSnap{}, false
		})
	if err != nil {
		if p.shown && p.bar != nil {
			io.WriteString(w, "\n") // the error on a line of its own
		}
		return rep, err
	}
	p.finish(prefetchFinal(rep, p.seen))
	return rep, nil
}

// prefetchSnap is a waiting prefetch's progress as the daemon reports it.
func prefetchSnap(wp hooks.WaitProgress) progressSnap {
	s := progressSnap{Files: wp.Files, FilesDone: wp.ResidentFiles, Missing: wp.MissingFiles, Failed: wp.FailedFiles,
		Bytes: wp.Bytes, BytesDone: wp.BytesResident, BytesKnown: wp.BytesKnown}
	if sl := wp.Slowest; sl != nil {
		s.Slowest = &slowItem{Path: sl.Path, Done: sl.Bytes, Size: sl.Size, Age: time.Duration(sl.AgeMS) * time.Millisecond}
		if !sl.Fetching {
			s.Slowest.State = "queued"
		}
	}
	return s
}

// prefetchFinal is the last state: the reply's counts (which include the
// names the daemon found missing before queueing anything), with the bytes
// of the last poll, all of them resident once every file is.
func prefetchFinal(rep hooks.PrefetchReply, last progressSnap) progressSnap {
	s := progressSnap{Files: rep.Resident + rep.Queued + len(rep.Missing) + len(rep.Failed), FilesDone: rep.Resident,
		Missing: len(rep.Missing), Failed: len(rep.Failed), Bytes: last.Bytes, BytesDone: last.BytesDone, BytesKnown: last.BytesKnown}
	if rep.Queued == 0 && len(rep.Failed) == 0 && s.BytesKnown {
		s.BytesDone = s.Bytes
	}
	if rep.Queued > 0 {
		s.Slowest = last.Slowest
	}
	return s
}

// flushWatched runs flushOnce and, when show is set, shows on w how the
// outputs not durable when it started become durable.
func flushWatched(ctx context.Context, cl *hooks.Client, wait, retry, show bool, w io.Writer) (hooks.FlushReply, error) {
	if !show {
		return flushOnce(ctx, cl, wait, retry)
	}
	// Only the counters and the outputs not durable: no durable events.
	const noEvents = math.MaxUint64
	base, err := cl.StatusSince(ctx, noEvents)
	if err != nil || base.Outputs == nil {
		return flushOnce(ctx, cl, wait, retry) // it reports what is wrong
	}
	p := newProgress("jitfs flush", w, time.Now)
	poll := func(ctx context.Context) (progressSnap, bool) {
		st, err := cl.StatusSince(ctx, noEvents)
		if err != nil || st.Outputs == nil {
			return progressSnap{}, false
		}
		return flushSnap(*st.Outputs, *base.Outputs, p.now()), true
	}
	rep, err := watch(ctx, p, func() (hooks.FlushReply, error) { return flushOnce(ctx, cl, wait, retry) }, poll)
	if err != nil {
		if p.shown && p.bar != nil {
			io.WriteString(w, "\n")
		}
		return rep, err
	}
	last := p.seen
	if s, ok := poll(context.Background()); ok {
		last = s
	}
	p.finish(last)
	return rep, nil
}

// flushSnap is the progress of a flush that started at base: the outputs
// not durable then or written since, and how many of them are durable
// now. The slowest is the output closed longest ago that is still not
// durable.
func flushSnap(now, base hooks.OutputStatus, at time.Time) progressSnap {
	done := int(now.DurableFiles - base.DurableFiles)
	s := progressSnap{Files: done + now.NotDurableTotal, FilesDone: done, BytesDone: now.DurableBytes - base.DurableBytes,
		BytesKnown: len(now.NotDurable) == now.NotDurableTotal,
		Failed:     now.Files["failed"] + now.Files["interrupted"] + now.Files["cut_short"]}
	s.Bytes = s.BytesDone
	var oldest *hooks.OutputFile
	for i, f := range now.NotDurable {
		s.Bytes += f.Size
		if f.ClosedAt > 0 && (oldest == nil || f.ClosedAt < oldest.ClosedAt) {
			oldest = &now.NotDurable[i]
		}
	}
	if oldest != nil {
		closed := time.Unix(0, int64(oldest.ClosedAt*1e9))
		s.Slowest = &slowItem{Path: oldest.Path, State: oldest.State, Size: oldest.Size, Age: at.Sub(closed)}
	}
	return s
}
