package progress

import (
	"context"
	"io"
	"sync/atomic"
)

type key struct{}

// With returns ctx carrying n, the counter the transfer under it adds to.
func With(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, key{}, n)
}

func counter(ctx context.Context) *atomic.Int64 {
	n, _ := ctx.Value(key{}).(*atomic.Int64)
	return n
}

// Add counts n more bytes received.
func Add(ctx context.Context, n int64) {
	if c := counter(ctx); c != nil {
		c.Add(n)
	}
}

// Reset starts the count again: a retried transfer refills its buffer from
// the start, so the bytes of the failed attempt are not done.
func Reset(ctx context.Context) {
	if c := counter(ctx); c != nil {
		c.Store(0)
	}
}

// Reader is r counting what it reads into ctx's counter; r itself when
// ctx carries none.
func Reader(ctx context.Context, r io.Reader) io.Reader {
	c := counter(ctx)
	if c == nil {
		return r
	}
	return &reader{r: r, n: c}
}

type reader struct {
	r io.Reader
	n *atomic.Int64
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n.Add(int64(n))
	return n, err
}
