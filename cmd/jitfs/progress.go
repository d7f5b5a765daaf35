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
	"unicode/utf8"

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
	// ByFiles: how far is counted in files, and BytesDone is shown alone,
	// labelled BytesLabel, because the bytes of a file in progress are
	// not reported and a byte bar would sit at 0% and then jump.
	ByFiles    bool
	BytesLabel string
	Slowest    *slowItem
	// End is set on the last state only when the wait stopped short of
	// done: "gave up" (its time ran out) or "interrupted", so the last
	// line does not read as finished.
	End string
}

// pending is how many files are neither done, missing nor failed.
func (s progressSnap) pending() int {
	return max(s.Files-s.FilesDone-s.Missing-s.Failed, 0)
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
		p.draw(s, now, false)
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
	if p.bar != nil {
		p.draw(s, now, true)
		io.WriteString(p.w, "\n")
		return
	}
	fmt.Fprintf(p.w, "%s: %s\n", p.verb, p.text(s, now, true))
}

func (p *progress) draw(s progressSnap, now time.Time, final bool) {
	// A line longer than the terminal wraps, and a wrapped bar redraws as
	// a new line each time: the description gives way first, the slowest
	// file's path from the left, as its name is what tells it apart.
	room := p.cols - 20 - 10
	line := p.text(s, now, final)
	if over := utf8.RuneCountInString(line) - room; over > 0 && s.Slowest != nil {
		sl := *s.Slowest
		sl.Path = shortenLeft(sl.Path, utf8.RuneCountInString(sl.Path)-over)
		s.Slowest = &sl
		line = p.text(s, now, final)
	}
	if r := []rune(line); len(r) > room {
		line = string(r[:max(room-1, 0)]) + "~"
	}
	// Describe first: each call redraws, and the bar's new percentage
	// drawn with the old words would show every update twice.
	p.bar.Describe(line)
	p.bar.Set64(int64(1000 * fraction(s)))
}

// shortenLeft fits path in n runes by cutting from the left, at a '/'
// when one is left: "…/plate.1001.exr".
func shortenLeft(path string, n int) string {
	r := []rune(path)
	if len(r) <= n {
		return path
	}
	tail := string(r[len(r)-max(n-1, 1):])
	if i := strings.IndexByte(tail, '/'); i >= 0 && i < len(tail)-1 {
		tail = tail[i:]
	}
	return "…" + tail
}

// fraction is how far s is, by bytes once every size is known, else by
// files.
func fraction(s progressSnap) float64 {
	switch {
	case s.BytesKnown && s.Bytes > 0 && !s.ByFiles:
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
	noun := "files"
	if s.Files == 1 {
		noun = "file"
	}
	parts := []string{fmt.Sprintf("%d/%d %s", s.FilesDone, s.Files, noun)}
	switch {
	case s.ByFiles:
		parts = append(parts, strings.TrimSpace(size(s.BytesDone)+" "+s.BytesLabel))
	case s.Bytes > 0 || s.BytesKnown:
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
	case final && s.End != "":
		parts = append(parts, counted(s.pending(), "file")+" pending")
	case final:
		parts = append(parts, "in "+dur(now.Sub(p.start)))
	case s.BytesKnown && !s.ByFiles && bytesRate > 0:
		parts = append(parts, dur(time.Duration(float64(s.Bytes-s.BytesDone)/bytesRate*float64(time.Second)))+" left")
	case filesRate > 0:
		parts = append(parts, dur(time.Duration(float64(s.pending())/filesRate*float64(time.Second)))+" left")
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
		what = append(what, dur(sl.Age))
		parts = append(parts, fmt.Sprintf("slowest: %s (%s)", sl.Path, strings.Join(what, ", ")))
	}
	line := strings.Join(parts, ", ")
	if final && s.End != "" {
		line = s.End + " after " + dur(now.Sub(p.start)) + ": " + line
	}
	return line
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
		rep, err := cl.Prefetch(ctx, req)
		if err != nil && ctx.Err() != nil {
			return rep, &interruptedError{pending: -1}
		}
		return rep, err
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
	if err != nil && ctx.Err() != nil {
		// Interrupted: the last line says how far it got, as a wait that
		// ran out does, and the error how much is left, rather than the
		// client's "interrupt signal received".
		if !p.shown {
			return rep, &interruptedError{pending: -1}
		}
		last := p.seen
		last.End = "interrupted"
		p.finish(last)
		return rep, &interruptedError{pending: p.seen.pending()}
	}
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
	if rep.TimedOut || rep.Queued > 0 {
		s.End = "gave up"
	}
	return s
}

// interruptedError is a wait ended by SIGINT or SIGTERM: the files are
// still pending, as when --wait runs out (exit 75).
type interruptedError struct {
	pending int // -1: not known, no progress was shown
}

func (e *interruptedError) Error() string {
	if e.pending < 0 {
		return "interrupted; the files asked for may still be pending"
	}
	return fmt.Sprintf("interrupted; %s still pending", counted(e.pending, "file"))
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
	if !rep.Durable {
		last.End = "gave up"
	}
	p.finish(last)
	return rep, nil
}

// flushSnap is the progress of a flush that started at base: the outputs
// not durable then or written since, and how many of them are durable
// now. It is counted in files: the output status says how big a pending
// output is but not how much of it is uploaded (the upload reports only
// its end), so a byte bar would sit at 0% until the first file is durable
// and then jump. The durable bytes are shown alone. The slowest is the
// output closed longest ago that is still not durable.
func flushSnap(now, base hooks.OutputStatus, at time.Time) progressSnap {
	done := int(now.DurableFiles - base.DurableFiles)
	s := progressSnap{Files: done + now.NotDurableTotal, FilesDone: done, BytesDone: now.DurableBytes - base.DurableBytes,
		ByFiles: true, BytesLabel: "durable",
		Failed: now.Files["failed"] + now.Files["interrupted"] + now.Files["cut_short"]}
	var oldest *hooks.OutputFile
	for i, f := range now.NotDurable {
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
