//go:build !unix

package main

import (
	"errors"
	"net"

	"github.com/pires/go-proxyproto"
)

// acceptProxySupported: -accept-proxy needs MSG_PEEK on the socket, which
// is not wired up here; parseConfig refuses the flag.
const acceptProxySupported = false

func peekHeader(*net.TCPConn) (int, *proxyproto.Header, []byte, error) {
	return 0, nil, nil, errors.New("-accept-proxy is not supported on this platform")
}
