package balance_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// Example forwards through a set of two servers, taken in turn; each
// server greets with its name.
func Example() {
	var servers []balance.Server
	for _, name := range []string{"a", "b"} {
		up, _ := net.Listen("tcp", "127.0.0.1:0")
		defer up.Close()
		go func() {
			for {
				c, err := up.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, name)
				c.Close()
			}
		}()
		servers = append(servers, balance.Server{Addr: up.Addr().String()})
	}

	// The embedding: a set in a pool's place.
	set, err := balance.New(balance.Config{Servers: servers, Pool: pool.Config{Spares: 1}})
	if err != nil {
		panic(err)
	}
	defer set.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	pl, err := listener.New(ln, set, listener.Config{})
	if err != nil {
		panic(err)
	}
	go pl.Serve()
	defer pl.Shutdown(context.Background())

	// Four clients: two sessions on each server.
	greeted := map[string]int{}
	for range 4 {
		c, err := net.Dial("tcp", pl.Addr().String())
		if err != nil {
			panic(err)
		}
		reply, _ := io.ReadAll(c)
		c.Close()
		greeted[string(reply)]++
	}
	fmt.Println(greeted)
	// Output: map[a:2 b:2]
}
