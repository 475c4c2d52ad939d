//go:build !unix

package main

import "os"

// notifyReload returns a nil channel: there is no SIGHUP here, so the
// configuration is read only at start.
func notifyReload() (trigger <-chan os.Signal, stop func()) {
	return nil, func() {}
}

// reloadHow says, in the "relay listening" line, what reloads.
const reloadHow = "off"
