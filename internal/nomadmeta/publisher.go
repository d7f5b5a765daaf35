package nomadmeta

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// DefaultInterval bounds how often the node's metadata is sent: Nomad
// batches dynamic metadata to its servers for up to 10 s anyway, and
// where a node's bytes are changes over minutes, not seconds.
const DefaultInterval = 30 * time.Second

// Options configures a Publisher.
type Options struct {
	Client *Client
	// Interval is the least time between two publishes, and how often
	// Want is asked (DefaultInterval when 0).
	Interval time.Duration
	// Want returns the metadata the node should carry now: every key the
	// publisher manages, "" for a key to unset. ok false means not known
	// yet (nothing is sent).
	Want func() (meta map[string]string, ok bool)
	Log  *slog.Logger
}

// Status is what the publisher has done, for the node's status.
type Status struct {
	Addr string `json:"addr"`
	// Published is what the agent last accepted (unset keys left out).
	Published map[string]string `json:"published"`
	Publishes int64             `json:"publishes"`
	// Errors counts failed publishes; Failing says the last one failed
	// (LastError), so the next interval tries again.
	Errors    int64  `json:"errors"`
	Failing   bool   `json:"failing,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Publisher keeps the node's metadata in step with Want, in the
// background.
type Publisher struct {
	opts   Options
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	st    Status
	known bool // the agent holds st.Published: nothing is sent until Want differs
}

// Start begins publishing: once now, then at most once per interval and
// only when Want differs from what the agent holds.
func Start(opts Options) *Publisher {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{opts: opts, log: opts.Log, cancel: cancel, done: make(chan struct{}),
		st: Status{Addr: opts.Client.Addr, Published: map[string]string{}}}
	go p.run(ctx)
	return p
}

// Stop ends publishing, interrupting a request in flight. What the agent
// holds stays: the cache, and the bytes the keys describe, outlive the
// daemon (docs/affinity.md).
func (p *Publisher) Stop() {
	p.cancel()
	<-p.done
}

// Status returns a copy of the publisher's state.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.Published = maps.Clone(p.st.Published)
	return st
}

func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	for {
		p.publish(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// publish sends the keys whose wanted value differs from what the agent
// holds: every managed key the first time, since a previous daemon may
// have left other values.
func (p *Publisher) publish(ctx context.Context) {
	want, ok := p.opts.Want()
	if !ok {
		return
	}
	p.mu.Lock()
	diff := map[string]*string{}
	for k, v := range want {
		old, had := p.st.Published[k]
		switch {
		case v == "" && (had || !p.known):
			diff[k] = nil
		case v != "" && (!had || old != v || !p.known):
			diff[k] = &v
		}
	}
	p.mu.Unlock()
	if len(diff) == 0 {
		return
	}
	err := p.opts.Client.Apply(ctx, diff)
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.st.Errors++
		p.st.LastError = err.Error()
		if !p.st.Failing {
			// Once per outage: the next intervals retry quietly.
			p.log.Warn("nomad: cannot publish node metadata; retrying every interval", "addr", p.st.Addr, "err", err,
				"interval", p.opts.Interval)
		}
		p.st.Failing = true
		return
	}
	if p.st.Failing {
		p.log.Info("nomad: node metadata published again", "addr", p.st.Addr, "failed_attempts", p.st.Errors)
	}
	p.st.Failing, p.st.LastError = false, ""
	p.st.Publishes++
	p.known = true
	for k, v := range diff {
		if v == nil {
			delete(p.st.Published, k)
		} else {
			p.st.Published[k] = *v
		}
	}
	p.log.Debug("nomad: node metadata published", "meta", p.st.Published)
}
