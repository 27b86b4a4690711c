package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kcsim"
)

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "cookie format", args: []string{"-cookie-format", "27"}, want: "cookie-format"},
		{name: "unknown flag", args: []string{"-bogus"}, want: "bogus"},
		{name: "extra argument", args: []string{"extra"}, want: "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestServeAll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type addrs struct{ node, traffic, mgmt string }
	up := make(chan addrs, 2)
	done := make(chan error, 1)
	go func() {
		done <- serveAll(ctx, []nodeSpec{
			{opts: kcsim.Options{Node: "keycloak1"}, traffic: "127.0.0.1:0", mgmt: "127.0.0.1:0"},
			{opts: kcsim.Options{Node: "keycloak2"}, traffic: "127.0.0.1:0", mgmt: "127.0.0.1:0"},
		}, func(node, traffic, mgmt string) { up <- addrs{node, traffic, mgmt} })
	}()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for range 2 {
		var a addrs
		select {
		case a = <-up:
		case err := <-done:
			t.Fatalf("serveAll returned early: %v", err)
		}
		resp, err := c.Get("http://" + a.mgmt + "/health/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s ready: %d", a.node, resp.StatusCode)
		}
		resp, err = c.Get("http://" + a.traffic + "/realms/test/hello")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Node"); got != a.node {
			t.Errorf("X-Node %q, want %q", got, a.node)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveAll after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveAll did not return after cancel")
	}
}

func TestServeAllListenError(t *testing.T) {
	err := serveAll(context.Background(), []nodeSpec{
		{opts: kcsim.Options{Node: "a"}, traffic: "127.0.0.1:0", mgmt: "127.0.0.1:0"},
		{opts: kcsim.Options{Node: "b"}, traffic: "256.0.0.1:1", mgmt: "127.0.0.1:0"},
	}, func(string, string, string) { t.Error("listening called despite a listen error") })
	if err == nil || !strings.Contains(err.Error(), "node b") {
		t.Errorf("err = %v, want a listen error for node b", err)
	}
}

func TestParseArgsWrongRoute(t *testing.T) {
	specs, err := parseArgs([]string{"-nodes", "3", "-wrong-route", "1", "-strict"})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"keycloak2", "keycloak3"}, {"keycloak3", "keycloak1"}, {"keycloak1", "keycloak2"}}
	for i, s := range specs {
		if s.opts.WrongRoute != 1 || !s.opts.Strict || !slices.Equal(s.opts.Peers, want[i]) {
			t.Errorf("node %d: wrong route %v, strict %v, peers %q; want 1, true, %q", i, s.opts.WrongRoute, s.opts.Strict, s.opts.Peers, want[i])
		}
	}
	specs, err = parseArgs([]string{"-node", "a", "-wrong-route", "0.25", "-peers", "b,c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].opts.WrongRoute != 0.25 || !slices.Equal(specs[0].opts.Peers, []string{"b", "c"}) {
		t.Errorf("single node: %+v", specs)
	}
	for _, args := range [][]string{{"-wrong-route", "1.5"}, {"-wrong-route", "-0.1"}, {"-wrong-route", "NaN"}, {"-peers", "b,,c"}} {
		if _, err := parseArgs(args); err == nil {
			t.Errorf("parseArgs(%q) accepted", args)
		}
	}
}
