package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// ErrNoNode is wrapped when no node daemon answers on the socket.
var ErrNoNode = errors.New("no jitfs node daemon answers")

// NodeClient speaks the node daemon's control API.
type NodeClient struct {
	socket string
	hc     *http.Client
}

// NewNodeClient talks to the node daemon at socket.
func NewNodeClient(socket string) *NodeClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// The attach stream holds its own connection for the task's life.
		DisableKeepAlives: true,
	}
	return &NodeClient{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket is the daemon's socket path.
func (c *NodeClient) Socket() string { return c.socket }

// NodeAnswers reports whether a node daemon answers at socket within the
// timeout: a `jitfs run` with no --daemon attaches only to one that does.
func NodeAnswers(socket string, timeout time.Duration) bool {
	if fi, err := os.Stat(socket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return NewNodeClient(socket).do(ctx, http.MethodGet, "/v1/health", nil, nil) == nil
}

func (c *NodeClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://jitfs-node"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", ErrNoNode, c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("node daemon at %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorReply
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("node daemon: %s", e.Error)
		}
		return fmt.Errorf("node daemon: %s", resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("node daemon: bad reply: %w", err)
		}
	}
	return nil
}

// Status is the node's status.
func (c *NodeClient) Status(ctx context.Context) (NodeStatus, error) {
	var st NodeStatus
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Release ends a job's pins (and its snapshot, with no task attached).
func (c *NodeClient) Release(ctx context.Context, job string) error {
	return c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(job)+"/release", struct{}{}, nil)
}

// Attachment is a task the node daemon serves. Lost is closed when the
// attach stream ends without a Detach: the daemon died or stopped, and
// the task's directories are gone with it.
type Attachment struct {
	c     *NodeClient
	Reply AttachReply
	Lost  <-chan struct{}
	body  io.Closer

	detached chan struct{}
}

// Attach asks the node daemon to serve a task's directories. The returned
// Attachment holds the connection the task lives by.
func (c *NodeClient) Attach(ctx context.Context, req AttachRequest) (*Attachment, error) {
	req.Schema = NodeSchema
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, "http://jitfs-node/v1/attach", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// Setting up waits on the daemon (bucket checks, mounting); ctx bounds
	// that wait, not the stream after it.
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := c.hc.Do(hreq)
		ch <- result{resp, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.resp != nil {
				r.resp.Body.Close() // the daemon detaches the task
			}
		}()
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoNode, c.socket, res.err)
	}
	br := bufio.NewReader(res.resp.Body)
	line, err := br.ReadBytes('\n')
	var rep AttachReply
	if jerr := json.Unmarshal(line, &rep); jerr != nil {
		res.resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("node daemon at %s: attach: %w", c.socket, err)
		}
		return nil, fmt.Errorf("node daemon at %s: attach: bad reply: %w", c.socket, jerr)
	}
	if rep.Error != "" || res.resp.StatusCode != http.StatusOK {
		res.resp.Body.Close()
		if rep.Error == "" {
			rep.Error = res.resp.Status
		}
		return nil, fmt.Errorf("node daemon: %s", rep.Error)
	}
	lost := make(chan struct{})
	a := &Attachment{c: c, Reply: rep, Lost: lost, body: res.resp.Body, detached: make(chan struct{})}
	go func() {
		// The daemon writes nothing more: the read ends when the stream
		// does, on detach or on the daemon's death.
		io.Copy(io.Discard, br)
		select {
		case <-a.detached:
		default:
			close(lost)
		}
	}()
	return a, nil
}

// Attached asks the daemon whether it still serves the task: false when
// it does not answer or answers without the task (a daemon that died and
// was restarted meanwhile).
func (a *Attachment) Attached(ctx context.Context) bool {
	return a.c.do(ctx, http.MethodGet, "/v1/tasks/"+a.Reply.Task, nil, nil) == nil
}

// Flush waits up to wait for the task's outputs to be durable.
func (a *Attachment) Flush(ctx context.Context, wait time.Duration, retryFailed bool) (FlushTaskReply, error) {
	var rep FlushTaskReply
	err := a.c.do(ctx, http.MethodPost, "/v1/tasks/"+a.Reply.Task+"/flush",
		FlushTaskRequest{WaitMS: wait.Milliseconds(), RetryFailed: retryFailed}, &rep)
	return rep, err
}

// Detach unmounts the task's directories and ends the stream.
func (a *Attachment) Detach(ctx context.Context) error {
	close(a.detached)
	err := a.c.do(ctx, http.MethodDelete, "/v1/tasks/"+a.Reply.Task, nil, nil)
	a.body.Close()
	return err
}
