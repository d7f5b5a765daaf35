package nomadmeta

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// DefaultAddr is the Nomad agent's HTTP API when NOMAD_ADDR is unset: the
// client agent on the node itself, as the nomad command assumes.
const DefaultAddr = "http://127.0.0.1:4646"

// Path is the client agent's dynamic node metadata endpoint.
const Path = "/v1/client/metadata"

// ApplyRequest is the body of POST /v1/client/metadata, as the Nomad API
// declares it (api.NodeMetaApplyRequest): NodeID empty for the node whose
// agent receives the request, a nil value to unset a key.
type ApplyRequest struct {
	NodeID string
	Meta   map[string]*string
}

// Client posts dynamic node metadata to one Nomad agent.
type Client struct {
	// Addr is the agent's HTTP API (DefaultAddr when empty).
	Addr string
	// Token is sent as X-Nomad-Token when set (node:write is needed with
	// ACLs on).
	Token string
	HTTP  *http.Client
}

// FromEnv is a client configured as the nomad command configures itself:
// NOMAD_ADDR, NOMAD_TOKEN and NOMAD_CACERT (a PEM file of the CA that
// signed the agent's certificate, for an https address).
func FromEnv() (*Client, error) {
	c := &Client{Addr: os.Getenv("NOMAD_ADDR"), Token: os.Getenv("NOMAD_TOKEN")}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca := os.Getenv("NOMAD_CACERT"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("nomad: NOMAD_CACERT: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nomad: NOMAD_CACERT %s holds no PEM certificate", ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// One request at a time, rarely: no idle connection worth keeping.
	tr.DisableKeepAlives = true
	c.HTTP = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return c, nil
}

// Apply sets (or, for nil values, unsets) the given keys of the agent's
// node metadata and leaves the others as they are.
func (c *Client) Apply(ctx context.Context, meta map[string]*string) error {
	body, err := json.Marshal(ApplyRequest{Meta: meta})
	if err != nil {
		return fmt.Errorf("nomad: %w", err)
	}
	addr := c.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(addr, "/")+Path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("nomad: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("X-Nomad-Token", c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("nomad: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("nomad: POST %s: %s: %s", Path, resp.Status, strings.TrimSpace(string(msg)))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return nil
}
