package output

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

func (a *Area) noSpace(rel string, err error) error {
	// One line per episode: a writer retrying a short write, or several
	// writers, would otherwise repeat it until uploads free space.
	if errors.Is(err, ErrNoSpace) && !a.space.fullLogged.Swap(true) {
		a.log.Error("output: staging full: a write failed with ENOSPC after waiting for uploads to free space",
			"path", rel, "staging_dir", a.opts.StagingDir, "staged_bytes", a.space.usedNow(), "budget_bytes", a.opts.StagingBytes,
			"waited", a.opts.SpaceWait)
	}
	return err
}

// space is the staging budget.
type space struct {
	mu     sync.Mutex
	used   int64
	budget int64
	freed  chan struct{} // closed and replaced when bytes are released
	// wanted is closed and replaced when a writer starts waiting for
	// space: uploaders sleeping out a backoff retry at once, so space
	// comes back as soon as GCS does rather than after a grown backoff.
	wanted chan struct{}
	// fullLogged is set when a full staging area was logged, and cleared
	// when space is released.
	fullLogged atomic.Bool
}

func (s *space) usedNow() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// reserve takes n bytes of the budget, waiting up to wait for uploads to
// release some.
func (s *space) reserve(ctx context.Context, n int64, wait time.Duration) error {
	if n <= 0 {
		return nil
	}
	var timer <-chan time.Time
	for {
		s.mu.Lock()
		if s.used+n <= s.budget {
			s.used += n
			s.mu.Unlock()
			return nil
		}
		ch := s.freed
		if timer == nil {
			close(s.wanted)
			s.wanted = make(chan struct{})
		}
		s.mu.Unlock()
		if timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			return ErrNoSpace
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitFreed waits until uploads release space or deadline passes, for a
// writer the disk itself refused; it wakes uploaders sleeping out a
// backoff, as reserve does.
func (s *space) waitFreed(ctx context.Context, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	s.mu.Lock()
	ch := s.freed
	close(s.wanted)
	s.wanted = make(chan struct{})
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// wantedCh is closed when a writer next starts waiting for space.
func (s *space) wantedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wanted
}

func (s *space) release(n int64) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.used = max(s.used-n, 0)
	s.fullLogged.Store(false)
	close(s.freed)
	s.freed = make(chan struct{})
	s.mu.Unlock()
}
