package listener

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
	"github.com/relaykit/relay/splice"
)

// The isolation tests are the reason the reuse rules exist: with reuse
// on, a reply still in flight when its client hung up must never reach
// the next client of that upstream conn. They run thousands of sessions
// against a server that answers after random delays, with clients that
// hang up before their reply or pipeline two requests and read one.

// isolation is what a run of isolation sessions saw.
type isolation struct {
	sessions int
	leaks    int      // a client read bytes that were not its own
	failures int      // a client that waited for its reply did not get it
	examples []string // a few leaks, for the failure message
	reused   uint64   // hand-outs of used conns (the rules were exercised)
}

// behaviour is what one isolation client does.
type behaviour int

const (
	normal    behaviour = iota // send, read the reply, close
	hangUp                     // send, close before the reply
	pipelined                  // send two requests, read one reply, close
)

// runIsolation drives sessions through addr from workers goroutines.
// Every client has its own ids, so any line it reads that does not carry
// them is another client's.
func runIsolation(t *testing.T, addr string, sessions, workers int, pipelining bool, seed uint64) isolation {
	t.Helper()
	var (
		mu  sync.Mutex
		res = isolation{sessions: sessions}
		wg  sync.WaitGroup
	)
	per := sessions / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range per {
				b := behaviour(rng.IntN(3))
				if b == pipelined && !pipelining {
					b = hangUp
				}
				leak, fail := isolationClient(addr, fmt.Sprintf("w%d-s%d", w, i), b)
				mu.Lock()
				if leak != "" {
					res.leaks++
					if len(res.examples) < 5 {
						res.examples = append(res.examples, leak)
					}
				}
				if fail != nil {
					res.failures++
					if len(res.examples) < 5 {
						res.examples = append(res.examples, fail.Error())
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// isolationClient runs one session. It returns a description of a leak
// (bytes that were not this client's), and an error if a reply it waited
// for did not come.
func isolationClient(addr, id string, b behaviour) (leak string, fail error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "REQ " + id + "\n"
	if b == pipelined {
		req = "REQ " + id + "-a\nREQ " + id + "-b\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	if b == hangUp {
		// Close with the reply owed. Read nothing, but look at whatever
		// already arrived: it must not be another client's.
		c.SetReadDeadline(time.Now())
		if buf, _ := io.ReadAll(c); len(buf) > 0 && string(buf) != "RESP "+id+"\n" {
			return fmt.Sprintf("%s (hang-up) read %q", id, buf), nil
		}
		return "", nil
	}
	want := "RESP " + id + "\n"
	if b == pipelined {
		want = "RESP " + id + "-a\n"
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "" && line != want {
		return fmt.Sprintf("%s read %q; want %q", id, line, want), nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: no reply: %w", id, err)
	}
	return "", nil
}

func TestIsolationWithReuse(t *testing.T) {
	tests := []struct {
		name       string
		pcfg       pool.Config
		pipelining bool
	}{
		// A fence drains replies still owed (pipelined ones included).
		{"verified with a fence", pool.Config{
			MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfVerified,
			Reset: pool.Fence([]byte("PING\r\n"), []byte("+PONG\r\n")),
		}, true},
		// Without a fence, reuse is safe only without pipelining.
		{"clean, no pipelining", pool.Config{MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startServer(t, reqServer(3*time.Millisecond, uint64(i)))
			tt.pcfg.Addr = up.Addr()
			tt.pcfg.Spares = 4
			l := startProxy(t, tt.pcfg, Config{})
			res := runIsolation(t, l.Addr().String(), 2000, 16, tt.pipelining, uint64(i))
			res.reused = l.Stats().Pool.GetReused
			if res.leaks != 0 || res.failures != 0 {
				t.Fatalf("%d sessions: got %d leaks and %d failures; want none; e.g. %q",
					res.sessions, res.leaks, res.failures, res.examples)
			}
			// Without reuse the test proves nothing.
			if res.reused < uint64(res.sessions)/10 {
				t.Fatalf("reused hand-outs: got %d of %d sessions; want reuse exercised", res.reused, res.sessions)
			}
			t.Logf("%d sessions, %d on reused conns, no leak", res.sessions, res.reused)
		})
	}
}

// TestIsolationFailsWithoutRules proves the isolation test can fail: with
// the verdict forced to clean, no drain and no quiet period (a naive
// pool, as the package doc of pool describes), replies reach the wrong
// clients.
func TestIsolationFailsWithoutRules(t *testing.T) {
	up := startServer(t, reqServer(3*time.Millisecond, 7))
	rulesOff := func(l *ProxyListener) {
		l.verdict = func(*splice.Result) pool.Verdict { return pool.Verdict{Used: true, Clean: true} }
		l.def.opts.DrainTimeout = time.Nanosecond
	}
	l := startProxy(t, pool.Config{Addr: up.Addr(), Spares: 4, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean, QuietPeriod: -1}, Config{}, rulesOff)
	res := runIsolation(t, l.Addr().String(), 2000, 16, true, 7)
	if res.leaks == 0 {
		t.Fatalf("%d sessions with the rules off: got no leak; want the test to catch some (failures %d)", res.sessions, res.failures)
	}
	t.Logf("rules off: %d of %d sessions read another client's bytes, e.g. %q", res.leaks, res.sessions, res.examples)
}
