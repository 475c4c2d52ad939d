// Command proxy is relay's bundled TCP forwarder: it accepts clients on
// -listen and forwards each to -upstream over a pool of upstream
// connections dialed ahead, optionally reusing a used connection when the
// -reuse policy deems it safe.
//
// With no flags it starts an embedded demo upstream (a line echo that
// names the upstream connection that served each line) and prints how to
// try it:
//
//	go run ./examples/proxy
//	echo hello | nc 127.0.0.1 7070      # upstream conn #N: hello
//
// In front of a Redis server (6.2 or newer), reusing connections with
// Redis's RESET between clients, so that none inherits another's login,
// database or subscriptions:
//
//	proxy -listen :7070 -upstream 10.0.0.5:6379 -spares 8 -max-open 64 \
//	    -protocol redis -metrics 127.0.0.1:9090
//
// In front of three Redis servers, the second with twice the share of
// sessions, each checked with PING every 2s:
//
//	proxy -upstream 10.0.0.5:6379,10.0.0.6:6379@2,10.0.0.7:6379 -balance least-conn \
//	    -protocol redis -health-every 2s
//
// Each server has a pool of its own (-spares, -max-idle and -max-open are
// per server). A dial that fails or times out (-dial-timeout, per try) is
// retried on another server within -get-timeout; failures eject a server
// for a while, and -health-every adds active checks.
//
// Every flag can also come from an environment variable RELAY_<NAME>
// (RELAY_MAX_OPEN=64) or from a -config file with one "name value" per
// line; the command line wins over the environment, which wins over the
// file. A bad value stops the program before it listens, with a message
// naming the flag and exit status 2. Run with -h for the full list.
//
// # Front door
//
// What happens to a client before it takes an upstream:
//
//	proxy -route api.example.com=10.0.0.5:443 -route '*.example.com=10.0.0.6:443,10.0.0.7:443' \
//	    -upstream 10.0.0.9:443 -deny 203.0.113.0/24 -max-sessions-per-ip 20
//
// -route sends TLS clients by the server name of their ClientHello (SNI)
// to servers of their own, without terminating TLS (so not with
// -tls-cert): the hello is peeked, replayed to the server, and the copy
// runs between the raw sockets. Each route has its own pools, with
// -upstream's pool, -balance, health and resolve flags. A client no route
// takes goes to -upstream; with -route, an empty -upstream means no
// default (such a client is refused) and no demo upstream. In the
// -config file, one "route NAME=UPSTREAMS" line per route; RELAY_ROUTE
// takes several separated by ';'. -allow and -deny (deny wins) and
// -max-sessions-per-ip refuse clients before any upstream is taken,
// counted in relay_refused_total.
//
// -send-proxy v1 or v2 writes a PROXY protocol header to each upstream
// conn before the client's bytes, so that the server sees the client's
// address; such a conn serves one client (-reuse never). -accept-proxy
// names the load balancers in front (HAProxy's send-proxy-v2, say): a
// client from them must start with a PROXY header, v1 or v2, whose source
// then is the client for -allow/-deny, the per-IP cap, logs, the status
// page and -send-proxy. Clients from elsewhere are plain clients (their
// header, if any, is data) or, with -accept-proxy-others refuse, closed.
// The header is read exactly (peeked with MSG_PEEK, then read to its last
// byte), so the copy still splices. Not on Windows.
//
// SIGINT or SIGTERM stops accepting at once, lets sessions finish for
// -shutdown-grace, cuts the rest, and exits 0. Other failures exit 1.
//
// SIGHUP (not on Windows) reloads: the -config file and the environment
// are read again (the command line stays as given and still wins) and
// validated as at start. An invalid configuration is logged at ERROR and
// changes nothing. A valid one applies -upstream (servers and weights),
// the servers of each running -route (matched by its names) and
// -balance at once, without dropping a session: a removed server
// takes no new session and its live ones finish. Other flags need a
// restart, and so do emptying a running -upstream and adding one where
// -route ran without a default; such a change is logged at WARN and
// ignored.
//
// The log (log/slog text, on stderr) reports the bound address, which
// matters with -listen 127.0.0.1:0, and is written once SIGHUP is
// caught, so a SIGHUP sent after it reloads rather than kills:
//
//	level=INFO msg="relay listening" addr=127.0.0.1:40123 upstream=10.0.0.5:6379,10.0.0.6:6379@2 balance=round-robin ... reload=SIGHUP routes=""
//	level=INFO msg="relay reloaded" upstream=10.0.0.6:6379 balance=least-conn changed=-upstream,-balance routes=""
//
// A reload looks names up only for the sets whose servers or policy it
// changes; one whose names do not resolve is refused;
// with several routes, one that fails after others took their servers is
// logged as "failed part-way", and the next reload applies them all.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "proxy: %v\n(run proxy -h for the flags)\n", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "proxy: %v\n", err)
	os.Exit(1)
}
