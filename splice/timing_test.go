package splice

import (
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// The idle and drain limits run on fake time (testing/synctest) over
// in-memory conns: net.Pipe, and memPipe where a half-close is needed.
// Durations are exact there.

// bubbleSession is a Join between in-memory conns inside a bubble.
type bubbleSession struct {
	clientEnd, joinClient     net.Conn
	upstreamEnd, joinUpstream net.Conn
	cancel                    context.CancelFunc
	done                      chan Result
}

func startBubble(t *testing.T, half bool, opt Options) *bubbleSession {
	s := &bubbleSession{done: make(chan Result, 1)}
	if half {
		a, b := memPipe()
		c, d := memPipe()
		s.clientEnd, s.joinClient, s.upstreamEnd, s.joinUpstream = a, b, c, d
	} else {
		s.clientEnd, s.joinClient = net.Pipe()
		s.upstreamEnd, s.joinUpstream = net.Pipe()
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(t.Context())
	go func() { s.done <- Join(ctx, s.joinClient, s.joinUpstream, opt) }()
	t.Cleanup(func() {
		for _, c := range []net.Conn{s.clientEnd, s.joinClient, s.upstreamEnd, s.joinUpstream} {
			c.Close()
		}
	})
	return s
}

func (s *bubbleSession) wait(t *testing.T) Result {
	t.Helper()
	r := <-s.done
	s.cancel()
	checkResult(t, r)
	return r
}

func TestIdle(t *testing.T) {
	const idle = time.Second
	t.Run("quiet", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := startBubble(t, false, Options{IdleTimeout: idle})
			r := s.wait(t)
			if r.Duration() != idle {
				t.Errorf("lasted %v; want %v", r.Duration(), idle)
			}
			if r.Up.End != EndIdle || r.Down.End != EndIdle || r.First != NoSide || r.FirstEnd != EndIdle {
				t.Errorf("ends %v, %v, first %v/%v; want idle, idle, none/idle", r.Up.End, r.Down.End, r.First, r.FirstEnd)
			}
		})
	})
	// Traffic re-arms the limit: it ends one full period after the last byte.
	t.Run("re-armed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := startBubble(t, false, Options{IdleTimeout: idle})
			time.Sleep(600 * time.Millisecond)
			go s.clientEnd.Write([]byte("x"))
			readN(t, s.upstreamEnd, 1)
			r := s.wait(t)
			if want := 1600 * time.Millisecond; r.Duration() != want {
				t.Errorf("lasted %v; want %v", r.Duration(), want)
			}
			if r.FirstEnd != EndIdle || r.Err != nil || r.UpstreamClean() {
				t.Errorf("FirstEnd %v, Err %v, clean %v; want idle, nil, false", r.FirstEnd, r.Err, r.UpstreamClean())
			}
		})
	})
	// The idle limit cuts a write blocked on a client that does not read.
	t.Run("blocked-write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := startBubble(t, false, Options{IdleTimeout: idle})
			go s.upstreamEnd.Write(make([]byte, 100<<10))
			r := s.wait(t)
			if r.Duration() != idle {
				t.Errorf("lasted %v; want %v", r.Duration(), idle)
			}
			if r.Down.End != EndIdle || !r.Down.WriteCut || r.Down.Stranded != bufSize || r.Down.Written != 0 {
				t.Errorf("down: End %v, WriteCut %v, Stranded %d, Written %d; want idle, true, %d, 0",
					r.Down.End, r.Down.WriteCut, r.Down.Stranded, r.Down.Written, bufSize)
			}
			if r.Err != nil || r.UpstreamClean() {
				t.Errorf("Err %v, clean %v; want nil, false", r.Err, r.UpstreamClean())
			}
		})
	})
	t.Run("after-fin", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := startBubble(t, true, Options{IdleTimeout: idle})
			time.Sleep(300 * time.Millisecond)
			s.clientEnd.(closeWriter).CloseWrite()
			r := s.wait(t)
			// A FIN moves no byte: the limit counts from the last byte.
			if want := idle; r.Duration() != want {
				t.Errorf("lasted %v; want %v", r.Duration(), want)
			}
			if r.Up.End != EndEOF || r.Down.End != EndIdle || r.First != Client || !r.UpstreamHalfClosed {
				t.Errorf("ends %v, %v, first %v, UpstreamHalfClosed %v; want eof, idle, client, true",
					r.Up.End, r.Down.End, r.First, r.UpstreamHalfClosed)
			}
		})
	})
}

func TestCancelTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startBubble(t, false, Options{IdleTimeout: time.Hour})
		time.Sleep(300 * time.Millisecond)
		s.cancel()
		r := s.wait(t)
		if r.Duration() != 300*time.Millisecond || r.FirstEnd != EndCanceled {
			t.Errorf("lasted %v, FirstEnd %v; want 300ms, canceled", r.Duration(), r.FirstEnd)
		}
	})
}

// TestDrain covers Reuse after the client's FIN, on fake time.
func TestDrain(t *testing.T) {
	const drain = 50 * time.Millisecond
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tests := []struct {
		name string
		// replyBeforeFIN: a complete exchange, then the FIN 100ms later.
		replyBeforeFIN bool
		// The upstream sends one-byte pieces of the reply at these times
		// after the FIN; with waitEOF it first reads to EOF, with close it
		// then half-closes.
		pieces         []time.Duration
		waitEOF, close bool
		// want
		dur     time.Duration // from the FIN to Join's return
		downEnd End
		clean   bool
		eofAt   time.Duration // when the upstream saw the FIN; -1: never
	}{
		{name: "reply-before-fin", replyBeforeFIN: true,
			dur: ms(50), downEnd: EndDrained, clean: true, eofAt: -1},
		{name: "reply-within-limit", pieces: []time.Duration{ms(40)},
			dur: ms(90), downEnd: EndDrained, clean: true, eofAt: -1},
		{name: "reply-trickles", pieces: []time.Duration{ms(30), ms(60), ms(90), ms(120), ms(150)},
			dur: ms(200), downEnd: EndDrained, clean: true, eofAt: -1},
		// No reply within the limit: reuse is given up and the FIN passed
		// on; the late reply still arrives.
		{name: "reply-too-late", pieces: []time.Duration{ms(60)}, close: true,
			dur: ms(60), downEnd: EndEOF, eofAt: drain},
		{name: "reply-after-eof", waitEOF: true, pieces: []time.Duration{0}, close: true,
			dur: drain, downEnd: EndEOF, eofAt: drain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startBubble(t, true, Options{Reuse: true, DrainTimeout: drain})
				s.clientEnd.Write([]byte("req"))
				readN(t, s.upstreamEnd, 3)
				if tt.replyBeforeFIN {
					s.upstreamEnd.Write([]byte("rep"))
					readN(t, s.clientEnd, 3)
					time.Sleep(100 * time.Millisecond)
				}
				s.clientEnd.(closeWriter).CloseWrite()
				fin := time.Now()

				// The upstream watches for the FIN and answers in pieces.
				eofSeen := make(chan time.Duration, 1)
				go func() {
					io.Copy(io.Discard, s.upstreamEnd)
					eofSeen <- time.Since(fin)
				}()
				answered := make(chan struct{})
				go func() {
					defer close(answered)
					if tt.waitEOF {
						at := <-eofSeen
						eofSeen <- at
					}
					for _, at := range tt.pieces {
						time.Sleep(at - time.Since(fin))
						s.upstreamEnd.Write([]byte("p"))
					}
					if tt.close {
						s.upstreamEnd.(closeWriter).CloseWrite()
					}
				}()
				gotc := make(chan []byte, 1)
				go func() {
					got, _ := io.ReadAll(s.clientEnd)
					gotc <- got
				}()

				r := s.wait(t)
				<-answered
				synctest.Wait()
				eofAt := time.Duration(-1)
				select {
				case eofAt = <-eofSeen:
				default:
				}
				s.joinClient.Close() // ends the client's ReadAll if Join did not
				got := <-gotc

				if want := len(tt.pieces); len(got) != want {
					t.Errorf("client got %q; want %d pieces", got, want)
				}
				if d := r.Stop.Sub(fin); d != tt.dur {
					t.Errorf("ended %v after the FIN; want %v", d, tt.dur)
				}
				if r.Up.End != EndEOF || r.Down.End != tt.downEnd {
					t.Errorf("ends %v, %v; want eof, %v", r.Up.End, r.Down.End, tt.downEnd)
				}
				if r.UpstreamClean() != tt.clean || r.UpstreamHalfClosed == tt.clean {
					t.Errorf("clean %v, UpstreamHalfClosed %v; want %v, %v", r.UpstreamClean(), r.UpstreamHalfClosed, tt.clean, !tt.clean)
				}
				if eofAt != tt.eofAt {
					t.Errorf("upstream saw EOF at %v; want %v", eofAt, tt.eofAt)
				}
				if r.Err != nil {
					t.Errorf("Err %v; want nil", r.Err)
				}
			})
		})
	}
}

// TestDrainNoCloseWrite: with Reuse and an upstream that cannot
// half-close, no reply within the drain limit ends the session.
func TestDrainNoCloseWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drain = 50 * time.Millisecond
		s := startBubble(t, false, Options{Reuse: true, DrainTimeout: drain})
		go s.clientEnd.Write([]byte("req"))
		readN(t, s.upstreamEnd, 3)
		s.clientEnd.Close()
		fin := time.Now()
		r := s.wait(t)
		if d := r.Stop.Sub(fin); d != drain {
			t.Errorf("ended %v after the FIN; want %v", d, drain)
		}
		if r.Down.End != EndInterrupted || r.UpstreamClean() {
			t.Errorf("down %v, clean %v; want interrupted, false", r.Down.End, r.UpstreamClean())
		}
	})
}

// slowReturn returns from Write a while after the bytes were delivered,
// as a goroutine preempted right after its write syscall would.
type slowReturn struct {
	net.Conn
	delay time.Duration
}

func (c slowReturn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	time.Sleep(c.delay)
	return n, err
}

// TestLastDirCausal: a reply counts as later than the request that caused
// it, however late the request's writer notes its write. This used to
// break: with the order taken after the write returned, a greeting whose
// writer was slow to return counted as later than the client's request,
// and the upstream looked clean with a reply owed.
func TestLastDirCausal(t *testing.T) {
	tests := []struct {
		name     string
		slowDown bool // the client conn's writes (greeting, reply) return late
		first    Dir
		wantDir  Dir
	}{
		{"greeting-request", true, ToClient, ToUpstream},
		{"request-reply", false, ToUpstream, ToClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const delay = 100 * time.Millisecond
				clientEnd, joinClient := memPipe()
				upstreamEnd, joinUpstream := memPipe()
				defer func() {
					for _, c := range []net.Conn{clientEnd, joinClient, upstreamEnd, joinUpstream} {
						c.Close()
					}
				}()
				var jc, ju net.Conn = joinClient, joinUpstream
				if tt.slowDown {
					jc = slowReturn{jc, delay}
				} else {
					ju = slowReturn{ju, delay}
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan Result, 1)
				go func() { done <- Join(ctx, jc, ju, Options{}) }()

				a, b := net.Conn(clientEnd), net.Conn(upstreamEnd)
				if tt.first == ToClient {
					a, b = b, a
				}
				a.Write([]byte("one"))
				readN(t, b, 3)
				b.Write([]byte("two")) // the answer, sent at once
				readN(t, a, 3)
				time.Sleep(2 * delay) // the slow writer returns
				cancel()
				r := <-done
				checkResult(t, r)
				if r.LastDir != tt.wantDir {
					t.Errorf("LastDir %v; want %v", r.LastDir, tt.wantDir)
				}
			})
		})
	}
}
