package splice

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// TestConcurrentEcho runs many sessions at once through an echo, each
// with its own random payload of mixed sizes (short reads through the
// buffer, bulk through pipes), and checks every byte: sessions share the
// buffer and pipe pools, and must never see each other's bytes.
func TestConcurrentEcho(t *testing.T) {
	const sessions = 32
	sizes := []int{1, 100, smallSize - 1, smallSize, smallSize + 1, 256 << 10}
	var wg sync.WaitGroup
	for i := range sessions {
		tr := tcpT
		if i%2 == 1 {
			tr = tcpT.parking(200 * time.Microsecond) // parked sessions among busy ones
		}
		s := startSession(t, tr, tr, Options{})
		s.bound(30 * time.Second)
		size := sizes[i%len(sizes)]
		wg.Add(2)
		go func() { // the echo
			defer wg.Done()
			io.Copy(s.upstreamEnd, s.upstreamEnd)
			s.upstreamEnd.(*net.TCPConn).CloseWrite()
		}()
		go func() {
			defer wg.Done()
			payload := make([]byte, size)
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for j := range payload {
				payload[j] = byte(r.Uint32())
			}
			go func() {
				s.clientEnd.Write(payload)
				s.clientEnd.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(s.clientEnd)
			if err != nil || !bytes.Equal(got, payload) {
				t.Errorf("session %d: got %d bytes (err %v), equal %v; want the %d sent",
					i, len(got), err, bytes.Equal(got, payload), size)
			}
			r0 := s.wait(t)
			if r0.Err != nil || r0.Up.Written != int64(size) || r0.Down.Written != int64(size) {
				t.Errorf("session %d: %v", i, r0)
			}
		}()
	}
	wg.Wait()
}
