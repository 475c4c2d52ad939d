package listener_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// Example wraps a plain TCP listener so that every connection it accepts
// is forwarded to an upstream, here a one-shot greeting server.
func Example() {
	upstream, _ := net.Listen("tcp", "127.0.0.1:0")
	defer upstream.Close()
	go func() {
		for {
			c, err := upstream.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from upstream\n")
			c.Close()
		}
	}()

	// The embedding: a listener, a pool of upstream conns, Serve.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	p, err := pool.New(pool.Config{Addr: upstream.Addr().String(), Spares: 2})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	pl, err := listener.New(ln, p, listener.Config{})
	if err != nil {
		panic(err)
	}
	go pl.Serve()
	defer pl.Shutdown(context.Background())

	// A client of the forwarder sees the upstream.
	c, err := net.Dial("tcp", pl.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	reply, _ := io.ReadAll(c)
	fmt.Print(string(reply))
	// Output: hello from upstream
}
