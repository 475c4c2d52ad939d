package splice

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
)

// BenchmarkRelay moves a one-way stream over loopback TCP through Join
// (splice path), through Join with conns that hide syscall.Conn (the
// user-space fallback), and through a plain pair of io.Copy (which
// splices too, through pipes of its own), for each write size.
// allocs/op counts every goroutine; the session's setup is outside the
// timed part.
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		for _, mode := range []string{"splice", "fallback", "iocopy"} {
			b.Run(fmt.Sprintf("%s/%dKiB", mode, size>>10), func(b *testing.B) {
				benchRelay(b, mode, size)
			})
		}
	}
}

func benchRelay(b *testing.B, mode string, size int) {
	clientEnd, joinClient := tcpPair(b)
	upstreamEnd, joinUpstream := tcpPair(b)

	// The sink reads everything to EOF.
	sunk := make(chan int64, 1)
	go func() {
		n, _ := io.CopyBuffer(io.Discard, upstreamEnd, make([]byte, 1<<20))
		sunk <- n
	}()

	relayed := startRelay(b, mode, joinClient, joinUpstream)

	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := clientEnd.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	clientEnd.(*net.TCPConn).CloseWrite()
	n := <-sunk
	b.StopTimer()
	upstreamEnd.(*net.TCPConn).CloseWrite()
	<-relayed
	if want := int64(b.N) * int64(size); n != want {
		b.Fatalf("sink got %d bytes; want %d", n, want)
	}
}

// BenchmarkPingPong sends a 64-byte request through the relay to an echo
// and waits for its 64-byte reply, over loopback TCP, one exchange per op:
// the per-request cost of a kept connection (Join's splice path, the
// user-space fallback, and a plain pair of io.Copy).
func BenchmarkPingPong(b *testing.B) {
	for _, mode := range []string{"splice", "fallback", "iocopy"} {
		b.Run(mode, func(b *testing.B) { benchPingPong(b, mode) })
	}
}

func benchPingPong(b *testing.B, mode string) {
	clientEnd, joinClient := tcpPair(b)
	upstreamEnd, joinUpstream := tcpPair(b)

	echoed := make(chan struct{})
	go func() { // the echo server
		defer close(echoed)
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(upstreamEnd, buf); err != nil {
				return
			}
			if _, err := upstreamEnd.Write(buf); err != nil {
				return
			}
		}
	}()

	relayed := startRelay(b, mode, joinClient, joinUpstream)

	req := make([]byte, 64)
	resp := make([]byte, 64)
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range b.N {
		req[0] = byte(i)
		if _, err := clientEnd.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(clientEnd, resp); err != nil {
			b.Fatal(err)
		}
		if resp[0] != byte(i) {
			b.Fatalf("reply %d to request %d", resp[0], byte(i))
		}
	}
	b.StopTimer()
	// CPU of the whole process (load, echo and relay): the relay's share
	// is what differs between the modes.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	clientEnd.(*net.TCPConn).CloseWrite()
	<-echoed
	upstreamEnd.(*net.TCPConn).CloseWrite()
	<-relayed
}

// startRelay relays between joinClient and joinUpstream in mode: Join on
// kernel sockets ("splice"), Join on conns that hide them ("fallback"),
// or a plain pair of io.Copy ("iocopy"). The returned channel is closed
// when the relay has returned, after both ends sent FIN.
func startRelay(b *testing.B, mode string, joinClient, joinUpstream net.Conn) <-chan struct{} {
	relayed := make(chan struct{})
	switch mode {
	case "splice", "fallback":
		c, u := joinClient, joinUpstream
		if mode == "fallback" {
			c, u = hideConn{c}, hideConn{u}
		}
		go func() {
			defer close(relayed)
			r := Join(context.Background(), c, u, Options{})
			if r.Up.Spliced != (mode == "splice" && tcpT.wantSpliced()) || r.Err != nil {
				b.Errorf("Spliced %v, Err %v", r.Up.Spliced, r.Err)
			}
		}()
	case "iocopy":
		back := make(chan struct{})
		go func() {
			io.Copy(joinClient, joinUpstream)
			joinClient.(*net.TCPConn).CloseWrite()
			close(back)
		}()
		go func() {
			defer close(relayed)
			io.Copy(joinUpstream, joinClient)
			joinUpstream.(*net.TCPConn).CloseWrite()
			<-back
		}()
	}
	return relayed
}
