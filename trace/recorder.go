package trace

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// RecorderOptions tunes a Recorder.
type RecorderOptions struct {
	// Queue is the number of events buffered between the read path and
	// the encoder (default 65536, about 10 MB at worst). A full queue drops.
	Queue int
	// FlushEvery bounds what a killed daemon loses (default 1s).
	FlushEvery time.Duration
}

// Recorder writes a live trace without ever blocking its callers.
type Recorder struct {
	start time.Time
	ch    chan Event
	done  chan struct{}
	out   io.WriteCloser

	events, dropped atomic.Int64
	closeOnce       sync.Once
	closed          atomic.Bool
	mu              sync.RWMutex // Record holds it shared so Close never races a send
	err             error
}

// NewRecorder writes h to out and starts the background encoder. The
// recorder owns out and closes it in Close.
func NewRecorder(out io.WriteCloser, h Header, opts RecorderOptions) (*Recorder, error) {
	if opts.Queue <= 0 {
		opts.Queue = 1 << 16
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = time.Second
	}
	h.Format = Format
	if h.Start.IsZero() {
		h.Start = time.Now()
	}
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(zw, 64<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(h); err != nil {
		return nil, err
	}
	// Flush the header at once so even an instantly killed daemon leaves
	// a trace that names its mount.
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := zw.Flush(); err != nil {
		return nil, err
	}
	r := &Recorder{start: h.Start, ch: make(chan Event, opts.Queue), done: make(chan struct{}), out: out}
	go r.run(zw, bw, enc, opts.FlushEvery)
	return r, nil
}

// Since returns the trace time of t (seconds since the header's start).
func (r *Recorder) Since(t time.Time) float64 { return t.Sub(r.start).Seconds() }

// Record queues ev, or drops and counts it when the queue is full or the
// recorder is closed. It never blocks.
func (r *Recorder) Record(ev Event) {
	if r == nil {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed.Load() {
		r.dropped.Add(1)
		return
	}
	select {
	case r.ch <- ev:
	default:
		r.dropped.Add(1)
	}
}

// Dropped is the number of events dropped so far.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Events is the number of events written so far.
func (r *Recorder) Events() int64 { return r.events.Load() }

func (r *Recorder) run(zw *zstd.Encoder, bw *bufio.Writer, enc *json.Encoder, every time.Duration) {
	defer close(r.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var err error
	flush := func() {
		if err == nil {
			if err = bw.Flush(); err == nil {
				err = zw.Flush()
			}
		}
	}
	for {
		select {
		case ev, ok := <-r.ch:
			if !ok {
				end := Event{T: time.Since(r.start).Seconds(), Op: OpEnd, Events: r.events.Load(), Dropped: r.dropped.Load()}
				if err == nil {
					err = enc.Encode(&end)
				}
				flush()
				if cerr := zw.Close(); err == nil {
					err = cerr
				}
				if cerr := r.out.Close(); err == nil {
					err = cerr
				}
				r.err = err
				return
			}
			if err == nil {
				// After a write error (disk full) keep draining so
				// producers never stall, and count what is lost.
				if err = enc.Encode(&ev); err == nil {
					r.events.Add(1)
					continue
				}
			}
			r.dropped.Add(1)
		case <-tick.C:
			flush()
		}
	}
}

// Close drains the queue, writes the trailer and closes the output. It
// returns the first write error, if any.
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed.Store(true)
		close(r.ch)
		r.mu.Unlock()
	})
	<-r.done
	if r.err != nil {
		return errors.Join(errors.New("trace: writing trace"), r.err)
	}
	return nil
}
