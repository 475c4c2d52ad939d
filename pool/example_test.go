package pool_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"

	"github.com/relaykit/relay/pool"
)

func Example() {
	// An upstream on loopback that answers each line in upper case.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprint(c, strings.ToUpper(line))
				}
			})
		}
	})

	// A strict request/response protocol: used conns may be reused.
	p, err := pool.New(pool.Config{Addr: ln.Addr().String(), MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	for _, msg := range []string{"hello", "again"} {
		lease, err := p.Get(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		c := lease.Conn()
		fmt.Fprintln(c, msg)
		reply, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		// The whole reply was read and nothing else is owed: clean.
		out := lease.Release(pool.Verdict{Used: true, Clean: true})
		fmt.Printf("%s from a %s conn, then %s\n", strings.TrimSpace(reply), lease.Source(), out)
	}
	// Output:
	// HELLO from a dial conn, then kept-used
	// AGAIN from a reused conn, then kept-used
}

// Reusing connections to Redis: RedisReset drains what the previous client
// was still owed and clears its session state (login, database, protocol,
// subscriptions) before a connection serves the next client. A PING fence
// would do the first only.
func ExampleRedisReset() {
	p, err := pool.New(pool.Config{
		Addr:    "127.0.0.1:6379",
		Spares:  4,
		MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfVerified,
		Reset: pool.RedisReset(), // Redis 6.2 or newer
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	fmt.Println(p.Policy(), p.ResetDrains())
	// Output: verified true
}
