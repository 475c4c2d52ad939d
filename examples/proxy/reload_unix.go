//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyReload starts catching SIGHUP, the reload signal, into the
// channel it returns, until stop is called; after stop, SIGHUP has its
// default action again.
func notifyReload() (trigger <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1) // a SIGHUP during a reload is kept; more coalesce
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// reloadHow says, in the "relay listening" line, what reloads.
const reloadHow = "SIGHUP"
