package splice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestIntegrity sends a deterministic stream each way at once and checks
// the checksums, the counts and the ends, over every kind of conn.
func TestIntegrity(t *testing.T) {
	for _, tr := range allTransports(t) {
		for _, size := range []int64{0, 1, 64 << 10, 256 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tr.name, size), func(t *testing.T) {
				if size > 1<<20 && testing.Short() {
					t.Skip("large stream skipped in -short mode")
				}
				s := startSession(t, tr, tr, Options{})
				type flow struct {
					sent, got  uint32
					n          int64
					serr, rerr error
				}
				run := func(from, to net.Conn, seed uint64) <-chan flow {
					ch := make(chan flow, 1)
					go func() {
						var f flow
						done := make(chan struct{})
						go func() {
							defer close(done)
							limit := int64(-1)
							if !tr.halfClose {
								limit = size
							}
							f.n, f.got, f.rerr = recvStream(to, limit)
						}()
						f.sent, f.serr = sendStream(from, seed, size)
						if f.serr == nil && tr.halfClose {
							f.serr = from.(closeWriter).CloseWrite()
						}
						<-done
						ch <- f
					}()
					return ch
				}
				upc := run(s.clientEnd, s.upstreamEnd, 1)
				downc := run(s.upstreamEnd, s.clientEnd, 2)
				up, down := <-upc, <-downc
				if !tr.halfClose {
					// No FIN to pass on: closing ends the session.
					s.clientEnd.Close()
					s.upstreamEnd.Close()
				}
				r := s.wait(t)
				for _, c := range []struct {
					name string
					f    flow
					d    DirResult
				}{{"up", up, r.Up}, {"down", down, r.Down}} {
					if c.f.serr != nil || c.f.rerr != nil {
						t.Errorf("%s: send %v, receive %v; want no errors", c.name, c.f.serr, c.f.rerr)
					}
					if c.f.n != size || c.f.got != c.f.sent {
						t.Errorf("%s: got %d bytes, crc %08x; want %d bytes, crc %08x", c.name, c.f.n, c.f.got, size, c.f.sent)
					}
					if c.d.Read != size || c.d.Written != size {
						t.Errorf("%s: Read %d, Written %d; want %d", c.name, c.d.Read, c.d.Written, size)
					}
					if c.d.Spliced != tr.wantSpliced() {
						t.Errorf("%s: Spliced %v; want %v", c.name, c.d.Spliced, tr.wantSpliced())
					}
					// Bulk moves with splice(2); a short message through a
					// buffer, and SplicedBytes never counts past Written.
					if c.d.SplicedBytes < 0 || c.d.SplicedBytes > c.d.Written {
						t.Errorf("%s: SplicedBytes %d of %d written", c.name, c.d.SplicedBytes, c.d.Written)
					}
					if tr.wantSpliced() && size >= 1<<20 && c.d.SplicedBytes == 0 {
						t.Errorf("%s: SplicedBytes 0 for %d bytes; want bulk spliced", c.name, size)
					}
					if size <= 1 && c.d.SplicedBytes != 0 {
						t.Errorf("%s: SplicedBytes %d for %d bytes; want 0", c.name, c.d.SplicedBytes, size)
					}
				}
				if r.Err != nil {
					t.Errorf("Err %v; want nil", r.Err)
				}
				if tr.halfClose {
					if r.Up.End != EndEOF || r.Down.End != EndEOF {
						t.Errorf("ends %v, %v; want eof, eof", r.Up.End, r.Down.End)
					}
					if !r.UpstreamEOF || !r.UpstreamHalfClosed || !r.ClientHalfClosed {
						t.Errorf("UpstreamEOF %v, UpstreamHalfClosed %v, ClientHalfClosed %v; want all true",
							r.UpstreamEOF, r.UpstreamHalfClosed, r.ClientHalfClosed)
					}
				}
				if gotUp, gotDown := r.Bytes(); gotUp != size || gotDown != size {
					t.Errorf("Bytes() = %d, %d; want %d, %d", gotUp, gotDown, size, size)
				}
				// A FIN passed on touches the upstream too.
				if want := size > 0 || r.UpstreamHalfClosed || r.ClientHalfClosed || r.UpstreamEOF; r.Used() != want {
					t.Errorf("Used() = %v; want %v", r.Used(), want)
				}
			})
		}
	}
}

// TestStopBlockedRead stops a session whose directions both wait for
// data: the reads end cleanly, nothing is cut and no error is reported.
// (The upstream is still unclean: a stop may fall between two parts of a
// reply.)
func TestStopBlockedRead(t *testing.T) {
	for _, tr := range allTransports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startSession(t, tr, tr, Options{})
			exchange(t, s, "request", "reply")
			s.cancel()
			r := s.wait(t)
			if r.Up.End != EndCanceled || r.Down.End != EndCanceled {
				t.Errorf("ends %v, %v; want canceled, canceled", r.Up.End, r.Down.End)
			}
			if r.First != NoSide || r.FirstEnd != EndCanceled {
				t.Errorf("first %v/%v; want none/canceled", r.First, r.FirstEnd)
			}
			if r.Err != nil || r.Up.WriteCut || r.Down.WriteCut {
				t.Errorf("Err %v, WriteCut %v/%v; want nil, false/false", r.Err, r.Up.WriteCut, r.Down.WriteCut)
			}
			if r.LastDir != ToClient || r.UpstreamClean() {
				t.Errorf("LastDir %v, clean %v; want to-client, false", r.LastDir, r.UpstreamClean())
			}
			checkUsable(t, s)
		})
	}
}

// exchange sends a request through the session and a reply back.
func exchange(t *testing.T, s *testSession, req, rep string) {
	t.Helper()
	werr := goWrite(s.clientEnd, req)
	if got := readN(t, s.upstreamEnd, len(req)); got != req {
		t.Fatalf("upstream got %q; want %q", got, req)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	werr = goWrite(s.upstreamEnd, rep)
	if got := readN(t, s.clientEnd, len(rep)); got != rep {
		t.Fatalf("client got %q; want %q", got, rep)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// checkUsable checks that Join left both conns open and without
// deadlines: a well-known pooling proxy design left its past deadline in
// place, and the next borrower's first read failed.
func checkUsable(t *testing.T, s *testSession) {
	t.Helper()
	s.bound(10 * time.Second)
	for _, c := range []struct {
		name          string
		joined, other net.Conn
	}{{"client", s.joinClient, s.clientEnd}, {"upstream", s.joinUpstream, s.upstreamEnd}} {
		// On failure the test's cleanup closes the conns, which ends the
		// writer goroutines.
		werr := goWrite(c.other, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c.joined, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("%s after Join: read %q, %v; want %q, nil", c.name, buf, err, "ping")
		}
		if err := <-werr; err != nil {
			t.Fatalf("%s: write ping: %v", c.name, err)
		}
		werr = goWrite(c.joined, "pong")
		if _, err := io.ReadFull(c.other, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("%s after Join: write: peer read %q, %v; want %q, nil", c.name, buf, err, "pong")
		}
		if err := <-werr; err != nil {
			t.Fatalf("%s after Join: write: %v", c.name, err)
		}
	}
}

// TestStopBlockedWrite stops a session whose reply direction is blocked
// writing to a client that does not read: the write is cut, its bytes are
// reported stranded, and the upstream is unclean.
func TestStopBlockedWrite(t *testing.T) {
	for _, tr := range allTransports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startSession(t, tr, tr, Options{})
			f := startFlood(s.upstreamEnd)
			f.waitStalled(t)
			s.cancel()
			r := s.wait(t)
			s.upstreamEnd.Close() // unblocks the flood
			<-f.done
			if r.Down.End != EndCanceled || !r.Down.WriteCut || r.Down.Stranded == 0 {
				t.Errorf("down: End %v, WriteCut %v, Stranded %d; want canceled, true, > 0",
					r.Down.End, r.Down.WriteCut, r.Down.Stranded)
			}
			if r.Err != nil {
				t.Errorf("Err %v; want nil (the cut was ours)", r.Err)
			}
			if r.UpstreamClean() {
				t.Errorf("UpstreamClean() = true; want false")
			}
		})
	}
}

// TestWriteErrorStrands resets the client while the reply direction is
// blocked writing to it: a real error, and the bytes held are stranded.
func TestWriteErrorStrands(t *testing.T) {
	trs := []transport{tcpT, hiddenT}
	for _, tr := range trs {
		t.Run(tr.name, func(t *testing.T) {
			s := startSession(t, tr, tr, Options{})
			f := startFlood(s.upstreamEnd)
			f.waitStalled(t)
			s.clientEnd.(*net.TCPConn).SetLinger(0)
			s.clientEnd.Close() // RST
			r := s.wait(t)
			s.upstreamEnd.Close()
			<-f.done
			if r.Err == nil {
				t.Errorf("Err nil; want the reset")
			}
			if !r.Down.WriteCut || r.Down.Stranded == 0 {
				t.Errorf("down: WriteCut %v, Stranded %d; want true, > 0", r.Down.WriteCut, r.Down.Stranded)
			}
			if r.UpstreamClean() {
				t.Errorf("UpstreamClean() = true; want false")
			}
		})
	}
}

// TestCanceledBeforeJoin: a ctx that is already done ends the session at
// once, before any byte moves.
func TestCanceledBeforeJoin(t *testing.T) {
	client, joinClient := tcpPair(t)
	_, joinUpstream := tcpPair(t)
	write(t, client, "early")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Join(ctx, joinClient, joinUpstream, Options{})
	checkResult(t, r)
	if r.FirstEnd != EndCanceled || r.Used() {
		t.Errorf("FirstEnd %v, Used %v; want canceled, false", r.FirstEnd, r.Used())
	}
	if got := readN(t, joinClient, 5); got != "early" {
		t.Errorf("got %q; want %q still unread", got, "early")
	}
}

// TestLastDir checks which direction moved the last byte (what that means
// for the upstream is TestUpstreamClean's).
func TestLastDir(t *testing.T) {
	tests := []struct {
		name    string
		steps   []Dir
		wantDir Dir
	}{
		{"none", nil, NoDir},
		{"request", []Dir{ToUpstream}, ToUpstream},
		{"request-reply", []Dir{ToUpstream, ToClient}, ToClient},
		{"greeting-request", []Dir{ToClient, ToUpstream}, ToUpstream},
		{"two-exchanges", []Dir{ToUpstream, ToClient, ToUpstream, ToClient}, ToClient},
	}
	for _, tr := range []transport{tcpT, pipeT} {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				s := startSession(t, tr, tr, Options{})
				for _, d := range tt.steps {
					from, to := s.clientEnd, s.upstreamEnd
					if d == ToClient {
						from, to = to, from
					}
					werr := goWrite(from, "msg")
					readN(t, to, 3)
					if err := <-werr; err != nil {
						t.Fatal(err)
					}
				}
				s.cancel()
				r := s.wait(t)
				if r.LastDir != tt.wantDir {
					t.Errorf("LastDir %v; want %v", r.LastDir, tt.wantDir)
				}
				var wantAt time.Time
				switch tt.wantDir {
				case ToUpstream:
					wantAt = r.Up.Last
				case ToClient:
					wantAt = r.Down.Last
				}
				if !r.LastAt.Equal(wantAt) {
					t.Errorf("LastAt %v; want %v", r.LastAt, wantAt)
				}
			})
		}
	}
}

// TestHalfClose checks FINs without Reuse: each is passed on and the other
// direction keeps flowing until its own FIN, whichever side starts.
func TestHalfClose(t *testing.T) {
	for _, tr := range socketTransports(t) {
		for _, first := range []Side{Client, Upstream} {
			t.Run(fmt.Sprintf("%s/%v-first", tr.name, first), func(t *testing.T) {
				s := startSession(t, tr, tr, Options{})
				s.bound(10 * time.Second)
				a, b := s.clientEnd, s.upstreamEnd
				if first == Upstream {
					a, b = b, a
				}
				write(t, a, "request")
				a.(closeWriter).CloseWrite()
				if got, err := readAll(b); got != "request" || err != nil {
					t.Fatalf("got %q, %v; want %q then EOF", got, err, "request")
				}
				write(t, b, "reply")
				b.(closeWriter).CloseWrite()
				if got, err := readAll(a); got != "reply" || err != nil {
					t.Fatalf("got %q, %v; want %q then EOF", got, err, "reply")
				}
				r := s.wait(t)
				if r.First != first || r.FirstEnd != EndEOF {
					t.Errorf("first %v/%v; want %v/eof", r.First, r.FirstEnd, first)
				}
				if r.Up.End != EndEOF || r.Down.End != EndEOF || r.Err != nil {
					t.Errorf("ends %v, %v, Err %v; want eof, eof, nil", r.Up.End, r.Down.End, r.Err)
				}
				if !r.UpstreamEOF || !r.UpstreamHalfClosed || !r.ClientHalfClosed || r.UpstreamClean() {
					t.Errorf("UpstreamEOF %v, UpstreamHalfClosed %v, ClientHalfClosed %v, clean %v; want true, true, true, false",
						r.UpstreamEOF, r.UpstreamHalfClosed, r.ClientHalfClosed, r.UpstreamClean())
				}
			})
		}
	}
}

func readAll(c net.Conn) (string, error) {
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestNoCloseWrite: a conn that cannot half-close ends the session at the
// first FIN. Without this the other direction would wait for a FIN that
// the far side never gets.
func TestNoCloseWrite(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			s := startSession(t, pipeT, pipeT, Options{Reuse: reuse, DrainTimeout: 10 * time.Millisecond})
			werr := goWrite(s.clientEnd, "bye")
			readN(t, s.upstreamEnd, 3)
			<-werr
			s.clientEnd.Close()
			r := s.wait(t)
			if r.First != Client || r.FirstEnd != EndEOF || r.Up.End != EndEOF {
				t.Errorf("first %v/%v, up %v; want client/eof, eof", r.First, r.FirstEnd, r.Up.End)
			}
			if r.Down.End != EndInterrupted {
				t.Errorf("down %v; want interrupted", r.Down.End)
			}
			if r.UpstreamClean() {
				t.Errorf("UpstreamClean() = true; want false (a reply is owed)")
			}
		})
	}
}

// TestIdleAfterFIN: the idle limit still ends a half-closed session whose
// upstream never answers nor closes.
func TestIdleAfterFIN(t *testing.T) {
	for _, tr := range []transport{tcpT, tcpT.parking(200 * time.Microsecond)} {
		t.Run(tr.name, func(t *testing.T) { testIdleAfterFIN(t, tr) })
	}
}

func testIdleAfterFIN(t *testing.T, tr transport) {
	const idle = 100 * time.Millisecond
	s := startSession(t, tr, tr, Options{IdleTimeout: idle})
	s.bound(10 * time.Second)
	s.clientEnd.(closeWriter).CloseWrite()
	if got, err := readAll(s.upstreamEnd); got != "" || err != nil {
		t.Fatalf("got %q, %v; want EOF", got, err)
	}
	r := s.wait(t)
	if r.Up.End != EndEOF || r.Down.End != EndIdle {
		t.Errorf("ends %v, %v; want eof, idle", r.Up.End, r.Down.End)
	}
	if r.Duration() < idle {
		t.Errorf("lasted %v; want at least %v", r.Duration(), idle)
	}
}

// TestReuseDrained: with Reuse, a client FIN after a complete exchange is
// not passed on; the session ends after the drain period with the
// upstream clean and still usable.
func TestReuseDrained(t *testing.T) {
	for _, tr := range socketTransports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startSession(t, tr, tr, Options{Reuse: true})
			s.bound(10 * time.Second)
			exchange(t, s, "request", "reply")
			fin := time.Now()
			s.clientEnd.(closeWriter).CloseWrite()
			r := s.wait(t)
			if r.Up.End != EndEOF || r.Down.End != EndDrained {
				t.Errorf("ends %v, %v; want eof, drained", r.Up.End, r.Down.End)
			}
			if r.UpstreamHalfClosed || !r.UpstreamClean() {
				t.Errorf("UpstreamHalfClosed %v, clean %v; want false, true (%v)", r.UpstreamHalfClosed, r.UpstreamClean(), r)
			}
			if d := r.Stop.Sub(fin); d < DefaultDrainTimeout {
				t.Errorf("ended %v after the FIN; want at least %v", d, DefaultDrainTimeout)
			}
			// The upstream is still open both ways for the next client.
			write(t, s.joinUpstream, "next")
			if got := readN(t, s.upstreamEnd, 4); got != "next" {
				t.Errorf("got %q; want %q", got, "next")
			}
			write(t, s.upstreamEnd, "ok")
			if got := readN(t, s.joinUpstream, 2); got != "ok" {
				t.Errorf("got %q; want %q", got, "ok")
			}
		})
	}
}

// TestDrainOwedOnly: with Reuse and DrainOwedOnly, a client FIN after a
// complete exchange ends the session at once, with the upstream clean,
// however long DrainTimeout is; a reply still owed at the FIN is still
// relayed first.
func TestDrainOwedOnly(t *testing.T) {
	const long = time.Hour // without DrainOwedOnly, Join would wait this long
	for _, tr := range socketTransports(t) {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("nothing owed", func(t *testing.T) {
				s := startSession(t, tr, tr, Options{Reuse: true, DrainTimeout: long, DrainOwedOnly: true})
				s.bound(10 * time.Second)
				exchange(t, s, "request", "reply")
				s.clientEnd.(closeWriter).CloseWrite()
				r := s.wait(t)
				if r.Up.End != EndEOF || r.Down.End != EndDrained || !r.UpstreamClean() {
					t.Errorf("ends %v, %v, clean %v; want eof, drained, true", r.Up.End, r.Down.End, r.UpstreamClean())
				}
			})
			t.Run("reply owed", func(t *testing.T) {
				s := startSession(t, tr, tr, Options{Reuse: true, DrainTimeout: 20 * time.Millisecond, DrainOwedOnly: true})
				s.bound(10 * time.Second)
				write(t, s.clientEnd, "request")
				if got := readN(t, s.upstreamEnd, 7); got != "request" {
					t.Fatalf("upstream got %q", got)
				}
				s.clientEnd.(closeWriter).CloseWrite()
				write(t, s.upstreamEnd, "reply")
				if got := readN(t, s.clientEnd, 5); got != "reply" {
					t.Errorf("client got %q; want the reply owed at its FIN", got)
				}
				r := s.wait(t)
				if r.Down.End != EndDrained || !r.UpstreamClean() {
					t.Errorf("down end %v, clean %v; want drained, true (%v)", r.Down.End, r.UpstreamClean(), r)
				}
			})
		})
	}
}

// TestReuseNoReply: with Reuse, when the upstream answers only after the
// FIN (it reads the request to EOF), reuse is given up after the drain
// period, the FIN is passed on, and the reply still reaches the client.
func TestReuseNoReply(t *testing.T) {
	const drain = 30 * time.Millisecond
	for _, tr := range socketTransports(t) {
		t.Run(tr.name, func(t *testing.T) {
			s := startSession(t, tr, tr, Options{Reuse: true, DrainTimeout: drain})
			s.bound(10 * time.Second)
			write(t, s.clientEnd, "request")
			fin := time.Now()
			s.clientEnd.(closeWriter).CloseWrite()
			if got, err := readAll(s.upstreamEnd); got != "request" || err != nil {
				t.Fatalf("upstream got %q, %v; want %q then EOF", got, err, "request")
			}
			if d := time.Since(fin); d < drain {
				t.Errorf("FIN passed on %v after it came; want at least %v", d, drain)
			}
			write(t, s.upstreamEnd, "reply")
			s.upstreamEnd.(closeWriter).CloseWrite()
			if got, err := readAll(s.clientEnd); got != "reply" || err != nil {
				t.Errorf("client got %q, %v; want %q then EOF", got, err, "reply")
			}
			r := s.wait(t)
			if !r.UpstreamHalfClosed || !r.UpstreamEOF || r.UpstreamClean() {
				t.Errorf("UpstreamHalfClosed %v, UpstreamEOF %v, clean %v; want true, true, false",
					r.UpstreamHalfClosed, r.UpstreamEOF, r.UpstreamClean())
			}
			if r.Up.End != EndEOF || r.Down.End != EndEOF || r.Err != nil {
				t.Errorf("ends %v, %v, Err %v; want eof, eof, nil", r.Up.End, r.Down.End, r.Err)
			}
		})
	}
}

// TestReuseUpstreamEOF: an upstream FIN makes the upstream unusable even
// with Reuse; it is passed on, and so is the client's later FIN.
func TestReuseUpstreamEOF(t *testing.T) {
	for _, tr := range []transport{tcpT, tcpT.parking(200 * time.Microsecond)} {
		t.Run(tr.name, func(t *testing.T) { testReuseUpstreamEOF(t, tr) })
	}
}

func testReuseUpstreamEOF(t *testing.T, tr transport) {
	s := startSession(t, tr, tr, Options{Reuse: true})
	s.bound(10 * time.Second)
	write(t, s.upstreamEnd, "bye")
	s.upstreamEnd.(closeWriter).CloseWrite()
	if got, err := readAll(s.clientEnd); got != "bye" || err != nil {
		t.Fatalf("got %q, %v; want %q then EOF", got, err, "bye")
	}
	s.clientEnd.(closeWriter).CloseWrite()
	if got, err := readAll(s.upstreamEnd); got != "" || err != nil {
		t.Fatalf("got %q, %v; want EOF", got, err)
	}
	r := s.wait(t)
	if !r.UpstreamEOF || !r.ClientHalfClosed || !r.UpstreamHalfClosed || r.UpstreamClean() {
		t.Errorf("UpstreamEOF %v, ClientHalfClosed %v, UpstreamHalfClosed %v, clean %v; want true, true, true, false",
			r.UpstreamEOF, r.ClientHalfClosed, r.UpstreamHalfClosed, r.UpstreamClean())
	}
	if r.First != Upstream {
		t.Errorf("First %v; want upstream", r.First)
	}
}

// TestUpstreamClean covers the verdict on its own.
func TestUpstreamClean(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		r    Result
		want bool
	}{
		{"unused", Result{}, true},
		{"reply-last", Result{LastDir: ToClient}, true},
		{"request-last", Result{LastDir: ToUpstream}, false},
		{"error", Result{LastDir: ToClient, Err: errBoom}, false},
		{"upstream-eof", Result{LastDir: ToClient, UpstreamEOF: true}, false},
		{"half-closed", Result{LastDir: ToClient, UpstreamHalfClosed: true}, false},
		{"client-half-closed", Result{LastDir: ToClient, ClientHalfClosed: true}, true},
		{"up-cut", Result{LastDir: ToClient, Up: DirResult{WriteCut: true}}, false},
		{"down-cut", Result{LastDir: ToClient, Down: DirResult{WriteCut: true}}, false},
		{"stranded", Result{LastDir: ToClient, Down: DirResult{Stranded: 1}}, false},
		{"drained", Result{LastDir: ToClient, First: Client, FirstEnd: EndEOF, Down: DirResult{End: EndDrained}}, true},
		// A stop can fall between two parts of a reply.
		{"idle", Result{LastDir: ToClient, FirstEnd: EndIdle, Down: DirResult{End: EndIdle}}, false},
		{"canceled", Result{LastDir: ToClient, FirstEnd: EndCanceled, Down: DirResult{End: EndCanceled}}, false},
		{"drain-canceled", Result{LastDir: ToClient, First: Client, FirstEnd: EndEOF, Down: DirResult{End: EndCanceled}}, false},
		{"drain-idle", Result{LastDir: ToClient, First: Client, FirstEnd: EndEOF, Down: DirResult{End: EndIdle}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.UpstreamClean(); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestResultString(t *testing.T) {
	r := Result{Up: DirResult{Written: 3}, Down: DirResult{Written: 5}, First: Client, FirstEnd: EndEOF, LastDir: ToClient}
	want := "up=3 down=5 first=client/eof last=to-client clean=true err=<nil>"
	// A value, not a pointer: fmt and slog must find String.
	if got := fmt.Sprint(r); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
