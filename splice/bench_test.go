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
