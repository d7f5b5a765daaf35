package backoff

import (
	"testing"
	"time"
)

func TestNextJittersAroundADoublingBase(t *testing.T) {
	for round := 0; round < 200; round++ {
		b := New(100*time.Millisecond, time.Second)
		for i, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
			base *= time.Millisecond
			if d := b.Next(); d < base/2 || d >= base/2*3 {
				t.Fatalf("delay %d = %v, want within [%v, %v)", i, d, base/2, base/2*3)
			}
		}
	}
}

func TestNextIsJittered(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		seen[New(time.Second, time.Second).Next()] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 first delays were all %v: no jitter", seen)
	}
}

func TestReset(t *testing.T) {
	b := New(10*time.Millisecond, time.Hour)
	for i := 0; i < 10; i++ {
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d < 5*time.Millisecond || d >= 15*time.Millisecond {
		t.Errorf("delay after Reset = %v, want within [5ms, 15ms)", d)
	}
}

func TestNonPositiveInitial(t *testing.T) {
	if d := New(0, time.Second).Next(); d != 0 {
		t.Errorf("delay = %v, want 0", d)
	}
}
