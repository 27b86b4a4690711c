package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// DefaultSocket is the admin socket path the CLI uses by default.
const DefaultSocket = "/run/kclb/admin.sock"

// Client talks to a running kclb's admin API. Create it with
// NewUnixClient or NewTCPClient; it is safe for concurrent use.
type Client struct {
	http   *http.Client
	base   string // URL prefix, no trailing slash
	token  string
	target string // for messages: the socket path or the URL
	unix   bool
}

// NewUnixClient returns a client for the admin socket at path.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 1,
	}
	return &Client{http: &http.Client{Transport: tr}, base: "http://kclb", target: path, unix: true}
}

// NewTCPClient returns a client for the admin API at baseURL (for
// example "http://127.0.0.1:9100"), sending token as a bearer token when
// it is not empty.
func NewTCPClient(baseURL, token string) *Client {
	return &Client{http: &http.Client{}, base: strings.TrimRight(baseURL, "/"), token: token, target: baseURL}
}

// APIError is an error response from the admin API.
type APIError struct {
	// Code is the HTTP status.
	Code int
	// Body is the decoded error body.
	Body ErrorBody
}

// Error returns the API's message, with the known server names for an
// unknown server.
func (e *APIError) Error() string {
	msg := e.Body.Error
	if msg == "" {
		msg = http.StatusText(e.Code)
	}
	if len(e.Body.Known) > 0 {
		msg += " (known: " + strings.Join(e.Body.Known, ", ") + ")"
	}
	return msg
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Server returns GET /v1/servers/{name}.
func (c *Client) Server(ctx context.Context, name string) (*ServerStatus, error) {
	var st ServerStatus
	if err := c.do(ctx, http.MethodGet, "/v1/servers/"+url.PathEscape(name), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// SetAdmin sets the admin state of the server called name.
func (c *Client) SetAdmin(ctx context.Context, name string, a backend.AdminState) (*ChangeResult, error) {
	var res ChangeResult
	if err := c.do(ctx, http.MethodPost, "/v1/servers/"+url.PathEscape(name)+"/"+a.String(), &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Wait blocks until the server called name meets until, or the server's
// timeout passes (an *APIError with code 504). quiet zero means the
// server's default.
func (c *Client) Wait(ctx context.Context, name string, until Until, timeout, quiet time.Duration) (*WaitResult, error) {
	q := url.Values{"until": {until.String()}, "timeout": {timeout.String()}}
	if quiet > 0 {
		q.Set("quiet", quiet.String())
	}
	var res WaitResult
	if err := c.do(ctx, http.MethodGet, "/v1/servers/"+url.PathEscape(name)+"/wait?"+q.Encode(), &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Reload asks kclb to re-read and apply its configuration file; a
// configuration error comes back as an *APIError naming every problem.
func (c *Client) Reload(ctx context.Context) error {
	var res ReloadResult
	return c.do(ctx, http.MethodPost, "/v1/reload", &res)
}

// do sends a request and decodes a 2xx JSON body into out.
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("admin request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: read response: %w", c.target, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Code: resp.StatusCode}
		if json.Unmarshal(b, &e.Body) != nil || e.Body.Error == "" {
			e.Body.Error = fmt.Sprintf("admin API at %s: %s", c.target, resp.Status)
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			e.Body.Error += " (pass -token-file)"
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API at %s: decode response: %w", c.target, err)
	}
	return nil
}

// connError turns a transport failure into a message an operator can act on.
func (c *Client) connError(err error) error {
	switch {
	case c.unix && errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("admin socket %s does not exist: is kclb running with [admin] socket set? (use -s PATH): %w", c.target, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied on admin socket %s: run as root or as a member of the socket's group: %w", c.target, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connection refused by %s: kclb is not running or not listening there: %w", c.target, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("admin API at %s: timed out: %w", c.target, err)
	}
	return fmt.Errorf("admin API at %s: %w", c.target, err)
}
