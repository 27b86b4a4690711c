// Package kcsimtest runs Keycloak stand-ins (package kcsim) on loopback
// for tests: StartCluster starts N nodes on ephemeral ports and stops them
// when the test ends. It imports the testing package, so only tests use
// it; the kclb binary never links it.
package kcsimtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/kclb/kclb/internal/kcsim"
)

// Cluster is a set of Nodes served on loopback for tests, created by
// StartCluster. Its methods are safe for concurrent use.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex // guards the running state of every member
	nodes []*ClusterNode
}

// ClusterNode is one member of a Cluster.
type ClusterNode struct {
	// Node is the simulated Keycloak; switches and Stats live here.
	Node *kcsim.Node
	// Traffic and Mgmt are the fixed loopback addresses of the two ports;
	// they stay the same across Stop and Start.
	Traffic, Mgmt netip.AddrPort

	cancel context.CancelFunc // nil while stopped
	done   chan error
}

// TrafficURL returns "http://<traffic addr>".
func (m *ClusterNode) TrafficURL() string { return "http://" + m.Traffic.String() }

// MgmtURL returns "http://<management addr>".
func (m *ClusterNode) MgmtURL() string { return "http://" + m.Mgmt.String() }

// StartCluster starts n nodes on 127.0.0.1 ephemeral ports and stops them
// with t.Cleanup. Every node gets opts with Node set to "keycloak1" ..
// "keycloakN" (opts.Node, if set, is used as the prefix instead),
// ClusterSize defaulting to n and Peers, if empty, set to the names of
// the other members.
func StartCluster(t testing.TB, n int, opts kcsim.Options) *Cluster {
	t.Helper()
	prefix := opts.Node
	if prefix == "" {
		prefix = "keycloak"
	}
	if opts.ClusterSize == 0 {
		opts.ClusterSize = n
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	c := &Cluster{t: t}
	for i := 0; i < n; i++ {
		o := opts
		o.Node = names[i]
		if len(opts.Peers) == 0 {
			o.Peers = kcsim.OtherNodes(names, i)
		}
		if o.Logger != nil {
			o.Logger = o.Logger.With("cluster_index", i)
		}
		m := &ClusterNode{Node: kcsim.New(o)}
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("kcsim: listen traffic: %v", err)
		}
		ml, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tl.Close()
			t.Fatalf("kcsim: listen management: %v", err)
		}
		m.Traffic = tl.Addr().(*net.TCPAddr).AddrPort()
		m.Mgmt = ml.Addr().(*net.TCPAddr).AddrPort()
		c.nodes = append(c.nodes, m)
		c.serve(m, tl, ml)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Stop(i)
		}
	})
	return c
}

// serve runs m on the given listeners. c.mu must be held or c unpublished.
func (c *Cluster) serve(m *ClusterNode, tl, ml net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done = make(chan error, 1)
	go func() { m.done <- m.Node.Serve(ctx, tl, ml) }()
}

// Len returns the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// Nodes returns the members in order.
func (c *Cluster) Nodes() []*ClusterNode { return c.nodes }

// At returns member i (0-based).
func (c *Cluster) At(i int) *ClusterNode { return c.nodes[i] }

// Stop shuts node i down (listeners closed: connections are refused) and
// waits for it. Stopping a stopped node does nothing. A Serve error is
// reported with t.Errorf.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.nodes[i]
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	if err := <-m.done; err != nil {
		c.t.Errorf("kcsim: node %s: %v", m.Node.Name(), err)
	}
}

// Start restarts a stopped node i on the same addresses, keeping its
// switches, counters and sessions. Starting a running node does nothing.
// It fails the test if the addresses cannot be bound again.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.nodes[i]
	if m.cancel != nil {
		return
	}
	tl, err := kcsim.Relisten(context.Background(), "tcp", m.Traffic.String())
	if err != nil {
		c.t.Fatalf("kcsim: restart %s: %v", m.Node.Name(), err)
	}
	ml, err := kcsim.Relisten(context.Background(), "tcp", m.Mgmt.String())
	if err != nil {
		tl.Close()
		c.t.Fatalf("kcsim: restart %s: %v", m.Node.Name(), err)
	}
	c.serve(m, tl, ml)
}

// Running reports whether node i is being served.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].cancel != nil
}

// Stats sums the counters of all nodes (ByClass included).
func (c *Cluster) Stats() kcsim.Stats {
	sum := kcsim.Stats{ByClass: map[string]int64{}}
	for _, m := range c.nodes {
		s := m.Node.Stats()
		sum.Requests += s.Requests
		sum.Logins += s.Logins
		sum.Misroutes += s.Misroutes
		sum.Tokens += s.Tokens
		for k, v := range s.ByClass {
			sum.ByClass[k] += v
		}
	}
	return sum
}
