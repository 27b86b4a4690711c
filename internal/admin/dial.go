package admin

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// Dial returns the client of the operator commands' connection flags:
// the Unix socket, or, when addr is not "", the TCP address (a URL; a
// bare host:port means http) with the bearer token read from tokenFile
// ("" for none).
func Dial(socket, addr, tokenFile string) (*Client, error) {
	if addr == "" {
		return NewUnixClient(socket), nil
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	token := ""
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return NewTCPClient(addr, token), nil
}

// WaitHandover polls the status until a handover (or, with back, its end)
// has taken effect (HandoverDone), for up to timeout. It returns the VRRP
// status then and HandoverDone's description; after timeout, an error
// with the last status.
func (c *Client) WaitHandover(back bool, timeout time.Duration) ([]VRRPStatus, string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err != nil {
			return nil, "", err
		}
		if done, what := HandoverDone(st.VRRP, back); done {
			return st.VRRP, what, nil
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("not done after %v: %s", timeout, VRRPSummary(st.VRRP))
		}
		time.Sleep(50 * time.Millisecond) // polling the status: the API has no VRRP wait
	}
}
