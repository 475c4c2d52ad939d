//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package pool

import "net"

// canPeek reports whether this platform has a socket peek.
const canPeek = false

// peeker cannot peek on this platform: every peek is unknown, so a used
// connection is never vetted (never kept) and a fresh one is handed out on
// its age alone.
type peeker struct{}

func (pk *peeker) init(net.Conn) {}

func (pk *peeker) peek() peekResult { return peekUnknown }
