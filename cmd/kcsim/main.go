// Command kcsim runs Keycloak stand-in nodes (package kcsim) for kclb's demo
// and manual tests.
//
//	kcsim -node keycloak1 -traffic 127.0.0.1:18081 -mgmt 127.0.0.1:19001 [-strict] [-realm test] [-cluster-size 3] [-cookie-format 26.1|legacy]
//	      [-wrong-route 0.5 -peers keycloak2,keycloak3]
//	kcsim -nodes 3 -base-traffic 18081 -base-mgmt 19001 [-host 127.0.0.1] [-wrong-route 1]
//
// With -nodes N it starts nodes keycloak1..keycloakN in one process on
// consecutive ports; each node's peers are the others. -wrong-route P gives
// that share of new auth sessions another node's route, like Keycloak 26.1
// (keycloak#43933). It prints one line per node when listening,
// "kcsim <node> traffic=<addr> mgmt=<addr>", and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/kclb/kclb/internal/kcsim"
)

func main() {
	if err := run(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "kcsim:", err)
		os.Exit(1)
	}
}

// nodeSpec is one node to start.
type nodeSpec struct {
	opts          kcsim.Options
	traffic, mgmt string
}

func run(args []string) error {
	specs, err := parseArgs(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveAll(ctx, specs, func(node, traffic, mgmt string) {
		fmt.Printf("kcsim %s traffic=%s mgmt=%s\n", node, traffic, mgmt)
	})
}

// parseArgs turns the command line into the nodes to start.
func parseArgs(args []string) ([]nodeSpec, error) {
	fs := flag.NewFlagSet("kcsim", flag.ContinueOnError)
	node := fs.String("node", "keycloak1", "node name (route suffix of AUTH_SESSION_ID, node label of metrics); with -nodes, the prefix is \"keycloak\"")
	traffic := fs.String("traffic", "127.0.0.1:18081", "traffic listen address")
	mgmt := fs.String("mgmt", "127.0.0.1:19001", "management listen address")
	strict := fs.Bool("strict", false, "accept only auth sessions and codes this node created; count misroutes")
	realm := fs.String("realm", "test", "realm name")
	clusterSize := fs.Int("cluster-size", 0, "vendor_cluster_size value (default: 1, or -nodes)")
	cookieFormat := fs.String("cookie-format", "26.1", "AUTH_SESSION_ID format: 26.1 or legacy")
	noRoute := fs.Bool("no-route", false, "do not attach the .<node> route to AUTH_SESSION_ID")
	wrongRoute := fs.Float64("wrong-route", 0, "share (0..1) of new auth sessions whose route names another node (keycloak#43933)")
	peers := fs.String("peers", "", "comma-separated names of the other nodes, used as wrong routes (default with -nodes: the others)")
	probeSecret := fs.String("probe-secret", "", "only client_secret accepted by client_credentials (default: any)")
	shutdownDelay := fs.Duration("shutdown-delay", 0, "keep serving with readiness DOWN this long after a signal")
	nodes := fs.Int("nodes", 0, "start this many nodes keycloak1..N in one process")
	host := fs.String("host", "127.0.0.1", "listen host with -nodes")
	baseTraffic := fs.Int("base-traffic", 18081, "first traffic port with -nodes")
	baseMgmt := fs.Int("base-mgmt", 19001, "first management port with -nodes")
	verbose := fs.Bool("v", false, "log switch changes to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f := kcsim.CookieFormat(*cookieFormat); f != kcsim.Format261 && f != kcsim.FormatLegacy {
		return nil, fmt.Errorf("-cookie-format %q: want 26.1 or legacy", *cookieFormat)
	}
	if !(*wrongRoute >= 0 && *wrongRoute <= 1) {
		return nil, fmt.Errorf("-wrong-route %v: want a share between 0 and 1", *wrongRoute)
	}
	var peerList []string
	if *peers != "" {
		peerList = strings.Split(*peers, ",")
		if slices.Contains(peerList, "") {
			return nil, fmt.Errorf("-peers %q: empty node name", *peers)
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	base := kcsim.Options{
		Realm: *realm, Strict: *strict, CookieFormat: kcsim.CookieFormat(*cookieFormat), NoRoute: *noRoute,
		ClusterSize: *clusterSize, ProbeSecret: *probeSecret, ShutdownDelay: *shutdownDelay, Logger: logger,
		WrongRoute: *wrongRoute, Peers: peerList,
	}

	var specs []nodeSpec
	if *nodes > 0 {
		if base.ClusterSize == 0 {
			base.ClusterSize = *nodes
		}
		names := make([]string, *nodes)
		for i := range names {
			names[i] = "keycloak" + strconv.Itoa(i+1)
		}
		for i := 0; i < *nodes; i++ {
			o := base
			o.Node = names[i]
			if len(peerList) == 0 {
				o.Peers = kcsim.OtherNodes(names, i)
			}
			specs = append(specs, nodeSpec{opts: o,
				traffic: net.JoinHostPort(*host, strconv.Itoa(*baseTraffic+i)),
				mgmt:    net.JoinHostPort(*host, strconv.Itoa(*baseMgmt+i))})
		}
	} else {
		o := base
		o.Node = *node
		specs = append(specs, nodeSpec{opts: o, traffic: *traffic, mgmt: *mgmt})
	}
	return specs, nil
}

// serveAll listens for every spec, calls listening for each node, then serves
// all nodes until ctx is done or one fails (which stops the others).
func serveAll(ctx context.Context, specs []nodeSpec, listening func(node, traffic, mgmt string)) error {
	type listeners struct{ t, m net.Listener }
	var ls []listeners
	closeAll := func() {
		for _, l := range ls {
			l.t.Close()
			l.m.Close()
		}
	}
	for _, s := range specs {
		tl, err := net.Listen("tcp", s.traffic)
		if err != nil {
			closeAll()
			return fmt.Errorf("node %s: listen traffic: %w", s.opts.Node, err)
		}
		ml, err := net.Listen("tcp", s.mgmt)
		if err != nil {
			tl.Close()
			closeAll()
			return fmt.Errorf("node %s: listen management: %w", s.opts.Node, err)
		}
		ls = append(ls, listeners{tl, ml})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(specs))
	for i, s := range specs {
		n := kcsim.New(s.opts)
		listening(n.Name(), ls[i].t.Addr().String(), ls[i].m.Addr().String())
		go func(l listeners) {
			err := n.Serve(ctx, l.t, l.m)
			if err != nil {
				err = fmt.Errorf("node %s: %w", n.Name(), err)
			}
			errc <- err
		}(ls[i])
	}
	var errs []error
	for range specs {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	return errors.Join(errs...)
}
