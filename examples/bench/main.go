// Command bench measures a TCP forwarder (relay or one of its peers)
// against the physical limit of the machine. It holds every part of a
// benchmark run except the proxies under test:
//
//	bench upstream  the upstream servers (sink, source, echo, TLS echo) and
//	                their counters on a loopback control port
//	bench load      one load mode against a proxy (or directly against an
//	                upstream), checked at both ends; one JSON line per result
//	bench iocopy    a plain io.Copy proxy, the baseline Go peer
//	bench report    medians of the JSON lines as a markdown table
//	bench freeport  prints a free loopback TCP port
//	bench waitlisten waits until a port is listening (without connecting)
//
// bench/run.sh in the repository root drives them all; see bench/README.md.
// Everything listens on and dials 127.0.0.1 only, and every subcommand stops
// by itself (bounded durations, or -timeout).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// errUsage is returned after a usage message was printed.
var errUsage = errors.New("usage")

const usage = `usage: bench <command> [flags]

commands:
  upstream    run the upstream servers (sink, source, echo, tlsecho)
  load        run one load mode and print its result
  iocopy      run a plain io.Copy TCP proxy
  report      turn result lines into a markdown table
  compare     compare two builds measured in alternating pairs (bench/ab.sh)
  freeport    print a free 127.0.0.1 TCP port
  waitlisten  wait until a 127.0.0.1 port is listening

run "bench <command> -h" for the flags of one command.
`

// run is the composition root: it dispatches to one subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "upstream":
		return runUpstream(ctx, rest, stdout, stderr)
	case "load":
		return runLoad(ctx, rest, stdout, stderr)
	case "iocopy":
		return runIOCopy(ctx, rest, stdout, stderr)
	case "report":
		return runReport(ctx, rest, stdout, stderr)
	case "compare":
		return runCompare(ctx, rest, stdout, stderr)
	case "freeport":
		return runFreePort(ctx, rest, stdout, stderr)
	case "waitlisten":
		return runWaitListen(ctx, rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "bench: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}
