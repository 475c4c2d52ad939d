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
// Every flag can also come from an environment variable RELAY_<NAME>
// (RELAY_MAX_OPEN=64) or from a -config file with one "name value" per
// line; the command line wins over the environment, which wins over the
// file. A bad value stops the program before it listens, with a message
// naming the flag and exit status 2. Run with -h for the full list.
//
// SIGINT or SIGTERM stops accepting at once, lets sessions finish for
// -shutdown-grace, cuts the rest, and exits 0. Other failures exit 1.
//
// The log (log/slog text, on stderr) reports the bound address, which
// matters with -listen 127.0.0.1:0:
//
//	level=INFO msg="relay listening" addr=127.0.0.1:40123 upstream=10.0.0.5:6379 ...
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
