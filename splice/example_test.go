package splice_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/relaykit/relay/splice"
)

// A client sends one line, gets it back in upper case, and hangs up. With
// Reuse, Join holds the client's FIN back, waits until the upstream has
// been quiet for the drain period, and leaves the upstream clean for the
// next client.
func Example() {
	// The upstream: answers each line in upper case.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer upLn.Close()
	go func() {
		c, err := upLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintln(c, strings.ToUpper(sc.Text()))
		}
	}()

	// The proxy's front door, and a client.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	reply := make(chan string, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			reply <- err.Error()
			return
		}
		defer c.Close()
		fmt.Fprintln(c, "hello")
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.(*net.TCPConn).CloseWrite() // the client is done
		io.Copy(io.Discard, c)        // until the proxy closes
		reply <- line
	}()

	client, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	upstream, err := net.Dial("tcp", upLn.Addr().String())
	if err != nil {
		panic(err)
	}
	defer upstream.Close()

	res := splice.Join(context.Background(), client, upstream, splice.Options{
		IdleTimeout: time.Minute,
		Reuse:       true,
	})
	client.Close() // Join never closes a conn

	fmt.Print("client got: ", <-reply)
	toUpstream, toClient := res.Bytes()
	fmt.Println("bytes:", toUpstream, toClient)
	fmt.Println("first end:", res.First, res.FirstEnd)
	fmt.Println("reply direction:", res.Down.End)
	fmt.Println("upstream clean:", res.UpstreamClean())
	// Output:
	// client got: HELLO
	// bytes: 6 6
	// first end: client eof
	// reply direction: drained
	// upstream clean: true
}
