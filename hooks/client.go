package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// maxReplyBytes bounds what the client reads of a reply: a 100k-file
// request whose every file is missing stays well below it.
const maxReplyBytes = 256 << 20

// Client calls a jitfs daemon's hook API over its Unix socket. It is safe
// for concurrent use and reuses connections.
type Client struct {
	socket  string
	timeout time.Duration
	hc      *http.Client
}

// NewClient returns a client of the daemon listening on socketPath. Each
// call gives up after timeout (0: never), plus the wait a prefetch asks
// for, since the daemon holds that reply for up to wait_ms.
func NewClient(socketPath string, timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &Client{socket: socketPath, timeout: timeout, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Prefetch sends a prefetch request; an empty Schema is filled in. A
// request the daemon refuses returns an *APIError with its reason.
func (c *Client) Prefetch(ctx context.Context, req PrefetchRequest) (PrefetchReply, error) {
	if req.Schema == "" {
		req.Schema = Schema
	}
	var reply PrefetchReply
	wait := time.Duration(max(req.WaitMS, 0)) * time.Millisecond
	err := c.do(ctx, http.MethodPost, "/v1/prefetch", wait, req, &reply)
	return reply, err
}

// Release sends a release request; an empty Schema is filled in.
func (c *Client) Release(ctx context.Context, req ReleaseRequest) error {
	if req.Schema == "" {
		req.Schema = Schema
	}
	var reply ReleaseReply
	return c.do(ctx, http.MethodPost, "/v1/release", 0, req, &reply)
}

// Status returns the engine's state and the server's counters.
func (c *Client) Status(ctx context.Context) (StatusReply, error) {
	var reply StatusReply
	err := c.do(ctx, http.MethodGet, "/v1/status", 0, nil, &reply)
	return reply, err
}

// Health reports whether a daemon answers on the socket, and for which
// mount.
func (c *Client) Health(ctx context.Context) (HealthReply, error) {
	var reply HealthReply
	err := c.do(ctx, http.MethodGet, "/v1/health", 0, nil, &reply)
	return reply, err
}

func (c *Client) do(ctx context.Context, method, path string, wait time.Duration, in, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout+wait)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("hooks: encode %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://jitfs"+path, body)
	if err != nil {
		return fmt.Errorf("hooks: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("hooks: %s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return fmt.Errorf("hooks: %s %s on %s: reading the reply: %w", method, path, c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorReply
		if json.Unmarshal(data, &e) != nil || e.Reason == "" {
			e = ErrorReply{Reason: "http", Error: http.StatusText(resp.StatusCode)}
		}
		return &APIError{StatusCode: resp.StatusCode, Reason: e.Reason, Message: e.Error}
	}
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("hooks: %s %s on %s: bad reply: %w", method, path, c.socket, err)
	}
	if head.Schema != Schema {
		return fmt.Errorf("hooks: %s %s on %s: reply schema %q, want %s", method, path, c.socket, head.Schema, Schema)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("hooks: %s %s on %s: bad reply: %w", method, path, c.socket, err)
	}
	return nil
}

// Flush asks an output area's daemon to make every output durable,
// holding the reply up to req.WaitMS (which the daemon may clamp); an
// empty Schema is filled in.
func (c *Client) Flush(ctx context.Context, req FlushRequest) (FlushReply, error) {
	if req.Schema == "" {
		req.Schema = Schema
	}
	var reply FlushReply
	wait := time.Duration(max(req.WaitMS, 0)) * time.Millisecond
	err := c.do(ctx, http.MethodPost, "/v1/flush", wait, req, &reply)
	return reply, err
}

// StatusSince is Status with the durable events after seq only.
func (c *Client) StatusSince(ctx context.Context, seq uint64) (StatusReply, error) {
	var reply StatusReply
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/status?durable_since=%d", seq), 0, nil, &reply)
	return reply, err
}
