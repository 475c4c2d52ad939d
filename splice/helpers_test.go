package splice

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/selfsigned"
	"go.uber.org/goleak"
	"golang.org/x/net/nettest"
)

// TestMain checks for leaked goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A transport makes connected pairs of one kind of conn: end is the
// test's side, join is the side given to Join.
type transport struct {
	name      string
	spliced   bool // Join splices between two such conns on Linux
	halfClose bool // the conns have CloseWrite
	pair      func(t testing.TB) (end, join net.Conn)
	// parkAfter, if set, is the park period of sessions started with
	// this transport on the client side (see startSession).
	parkAfter time.Duration
}

// parking returns tr with sessions parking after d.
func (tr transport) parking(d time.Duration) transport {
	tr.name = fmt.Sprintf("%s-park-%v", tr.name, d)
	tr.parkAfter = d
	return tr
}

// tune returns what startSession does to a session of tr before it runs.
func (tr transport) tune() func(*session) {
	if tr.parkAfter <= 0 {
		return nil
	}
	return func(s *session) { s.parkAfter = tr.parkAfter }
}

func (tr transport) wantSpliced() bool { return tr.spliced && runtime.GOOS == "linux" }

var (
	tcpT  = transport{"tcp", true, true, tcpPair, 0}
	unixT = transport{"unix", true, true, unixPair, 0}
	tlsT  = transport{"tls", false, true, tlsPair, 0}
	pipeT = transport{"pipe", false, false, pipePair, 0}
	// hiddenT is TCP behind a wrapper that hides syscall.Conn but keeps
	// CloseWrite: the fallback copy over real sockets.
	hiddenT = transport{"tcp-hidden", false, true, func(t testing.TB) (net.Conn, net.Conn) {
		end, join := tcpPair(t)
		return end, hideConn{join}
	}, 0}
)

// socketTransports are the transports with kernel FINs. Where sessions
// park, they include TCP with every idle copyToClient parking after
// 200µs, so that parking happens between the steps of every test.
func socketTransports(t testing.TB) []transport {
	trs := []transport{tcpT}
	if canPark {
		trs = append(trs, tcpT.parking(200*time.Microsecond))
	}
	if nettest.TestableNetwork("unix") {
		trs = append(trs, unixT)
	}
	return append(trs, tlsT, hiddenT)
}

func allTransports(t testing.TB) []transport {
	return append(socketTransports(t), pipeT)
}

// hideConn hides every method of a conn but net.Conn's and CloseWrite.
type hideConn struct{ net.Conn }

func (h hideConn) CloseWrite() error { return h.Conn.(closeWriter).CloseWrite() }

func tcpPair(t testing.TB) (net.Conn, net.Conn)  { return listenPair(t, "tcp") }
func unixPair(t testing.TB) (net.Conn, net.Conn) { return listenPair(t, "unix") }

func listenPair(t testing.TB, network string) (end, join net.Conn) {
	t.Helper()
	ln, err := nettest.NewLocalListener(network)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	end, err = net.Dial(ln.Addr().Network(), ln.Addr().String())
	a := <-ch
	if err != nil || a.err != nil {
		if a.c != nil {
			a.c.Close()
		}
		t.Fatal(errors.Join(err, a.err))
	}
	t.Cleanup(func() {
		end.Close()
		a.c.Close()
	})
	return end, a.c
}

func pipePair(t testing.TB) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// testCert is a self-signed certificate for "relay.test", made once.
var testCert = sync.OnceValues(func() (*selfsigned.Cert, error) {
	return selfsigned.New("relay test", "relay.test")
})

// tlsPair returns a TLS client (end) and server (join) over TCP, with the
// handshake done.
func tlsPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	a, b := tcpPair(t)
	return tlsOver(t, a, b)
}

// tlsOver runs TLS over the connected conns a (client) and b (server) and
// returns them with the handshake done.
func tlsOver(t testing.TB, a, b net.Conn) (net.Conn, net.Conn) {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	cli := tls.Client(a, &tls.Config{RootCAs: cert.Roots, ServerName: "relay.test"})
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	err = cli.Handshake()
	if err := errors.Join(err, <-errc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		srv.Close()
	})
	return cli, srv
}

// testSession is a Join running between two pairs of conns.
type testSession struct {
	clientEnd, joinClient     net.Conn
	upstreamEnd, joinUpstream net.Conn
	cancel                    context.CancelFunc
	done                      chan Result
	waited                    bool
	res                       Result
	tune                      func(*session) // if set, runs before the session does
}

// joinTuned is JoinTo with tune (if not nil) applied to the session
// before it runs.
func joinTuned(ctx context.Context, client, upstream net.Conn, opt Options, tune func(*session)) Result {
	s := newSession(client, upstream, opt)
	if tune != nil {
		tune(s)
	}
	s.run(ctx)
	var r Result
	s.finish(&r)
	return r
}

func startSession(t *testing.T, ct, ut transport, opt Options) *testSession {
	t.Helper()
	s := &testSession{done: make(chan Result, 1), tune: ct.tune()}
	s.clientEnd, s.joinClient = ct.pair(t)
	s.upstreamEnd, s.joinUpstream = ut.pair(t)
	s.bound(2 * time.Minute)
	return s.start(t, context.Background(), opt)
}

// bound sets deadlines on the test's ends, so that a broken Join fails
// the test instead of hanging it.
func (s *testSession) bound(d time.Duration) {
	s.clientEnd.SetDeadline(time.Now().Add(d))
	s.upstreamEnd.SetDeadline(time.Now().Add(d))
}

func (s *testSession) start(t *testing.T, ctx context.Context, opt Options) *testSession {
	ctx, s.cancel = context.WithCancel(ctx)
	go func() { s.done <- joinTuned(ctx, s.joinClient, s.joinUpstream, opt, s.tune) }()
	t.Cleanup(func() {
		s.cancel()
		if s.waited {
			return
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			// Join ignores its ctx: free it by closing the conns, so that
			// the test fails instead of hanging.
			for _, c := range []net.Conn{s.clientEnd, s.joinClient, s.upstreamEnd, s.joinUpstream} {
				c.Close()
			}
			<-s.done
		}
	})
	return s
}

// wait returns Join's result, failing the test if Join does not return.
func (s *testSession) wait(t *testing.T) Result {
	t.Helper()
	if s.waited {
		return s.res
	}
	select {
	case r := <-s.done:
		s.waited, s.res = true, r
		checkResult(t, r)
		return r
	case <-time.After(time.Minute):
		// Error, not Fatal: wait also runs on goroutines of the test's
		// own, where FailNow is not allowed.
		t.Error("Join did not return")
		s.waited = true
		return Result{}
	}
}

// checkResult checks what must hold for every result.
func checkResult(t *testing.T, r Result) {
	t.Helper()
	for _, d := range []struct {
		name string
		r    DirResult
	}{{"up", r.Up}, {"down", r.Down}} {
		if d.r.Read != d.r.Written+d.r.Stranded {
			t.Errorf("%s: read %d, written %d, stranded %d; want read = written + stranded", d.name, d.r.Read, d.r.Written, d.r.Stranded)
		}
		if d.r.WriteCut != (d.r.Stranded > 0) {
			t.Errorf("%s: WriteCut %v with %d stranded; want WriteCut iff stranded", d.name, d.r.WriteCut, d.r.Stranded)
		}
		if d.r.End == EndNone {
			t.Errorf("%s: End %v; want an end", d.name, d.r.End)
		}
		if (d.r.End == EndError) != (d.r.Err != nil) {
			t.Errorf("%s: End %v with Err %v; want Err iff EndError", d.name, d.r.End, d.r.Err)
		}
		if d.r.Err != nil && r.Err == nil {
			t.Errorf("%s: Err %v but Result.Err nil", d.name, d.r.Err)
		}
	}
	if r.Stop.Before(r.Start) {
		t.Errorf("Stop %v before Start %v", r.Stop, r.Start)
	}
	if r.LastDir != NoDir && (r.LastAt.Before(r.Start) || r.LastAt.After(r.Stop)) {
		t.Errorf("LastAt %v outside [%v, %v]", r.LastAt, r.Start, r.Stop)
	}
	if (r.LastDir == NoDir) != (r.Up.Written == 0 && r.Down.Written == 0) {
		t.Errorf("LastDir %v with %d and %d bytes written", r.LastDir, r.Up.Written, r.Down.Written)
	}
}

// The test stream: 64 KiB blocks of pseudo-random bytes, each stamped
// with its index and the seed, so that a lost, repeated or reordered
// block changes the checksum.
const blockSize = 64 << 10

type streamGen struct {
	seed uint64
	base []byte
	off  int64
}

func newStreamGen(seed uint64) *streamGen {
	g := &streamGen{seed: seed, base: make([]byte, blockSize)}
	x := seed*0x9e3779b97f4a7c15 | 1
	for i := 0; i < blockSize; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(g.base[i:], x)
	}
	return g
}

func (g *streamGen) Read(p []byte) (int, error) {
	for i := 0; i < len(p); {
		in := int(g.off % blockSize)
		n := copy(p[i:], g.base[in:])
		if in < 8 {
			var stamp [8]byte
			binary.LittleEndian.PutUint64(stamp[:], uint64(g.off/blockSize)^g.seed<<48)
			copy(p[i:i+min(n, 8-in)], stamp[in:])
		}
		i += n
		g.off += int64(n)
	}
	return len(p), nil
}

// sendStream writes size bytes of the stream seed to w in chunks of
// varied sizes and returns their checksum.
func sendStream(w io.Writer, seed uint64, size int64) (uint32, error) {
	g := newStreamGen(seed)
	h := crc32.NewIEEE()
	buf := make([]byte, 1<<20)
	chunks := []int{1, 7, 4096, 65537, 1 << 20}
	for i, left := 0, size; left > 0; i++ {
		k := int(min(int64(chunks[i%len(chunks)]), left))
		g.Read(buf[:k])
		h.Write(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return 0, err
		}
		left -= int64(k)
	}
	return h.Sum32(), nil
}

// recvStream reads r to EOF, or limit bytes if limit >= 0, and returns
// the count and checksum.
func recvStream(r io.Reader, limit int64) (int64, uint32, error) {
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	h := crc32.NewIEEE()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	return n, h.Sum32(), err
}

// flood writes to c until a write fails; progress is the time of the
// last completed write.
type flood struct {
	progress atomic.Int64
	done     chan error
}

func startFlood(c net.Conn) *flood {
	f := &flood{done: make(chan error, 1)}
	f.progress.Store(time.Now().UnixNano())
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				f.done <- err
				return
			}
			f.progress.Store(time.Now().UnixNano())
		}
	}()
	return f
}

// waitStalled waits until no write completed for a while: every buffer
// between the flood and a reader that does not read is full, so the
// direction in between is blocked writing.
func (f *flood) waitStalled(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if time.Since(time.Unix(0, f.progress.Load())) > 300*time.Millisecond {
			return
		}
	}
	t.Fatal("flood never stalled")
}

// readN reads exactly n bytes from c.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// goWrite writes from a goroutine (net.Pipe blocks until read); the
// returned channel yields the error.
func goWrite(c net.Conn, s string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte(s))
		ch <- err
	}()
	return ch
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
