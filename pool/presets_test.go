package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/realserver"
)

// These run RedisReset and MemcachedReset against real servers (see
// package realserver): on a raw conn where a previous client left bytes
// owed or state set, the reset must succeed and leave the conn neutral,
// or fail.

// redisConn dials addr and, in the test's name, sends before (the
// previous client's last bytes, replies left unread).
func redisConn(t *testing.T, addr, before string) *realserver.Conn {
	t.Helper()
	c, err := realserver.DialRedis(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, before); err != nil {
		t.Fatal(err)
	}
	return c
}

// runReset runs r.Func on c under a 2 s ctx, as the pool does, and
// clears c's deadlines afterwards.
func runReset(r Reset, c net.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := r.Func(ctx, c)
	c.SetDeadline(time.Time{})
	return err
}

func TestRedisReset(t *testing.T) {
	t.Parallel()
	srv := realserver.Redis(t, "user admin on >adminpw ~* &* +@all")
	tests := []struct {
		name   string
		before string // sent by the previous client, replies not read
	}{
		{"clean", ""},
		{"owed replies", "SET k v\r\nGET k\r\n"},
		// The client's own RESET is owed: its +RESET must not pass for
		// ours, and the AUTH after it must not survive.
		{"pipelined RESET", "RESET\r\nAUTH admin adminpw\r\n"},
		// A reply crafted to read +RESET, then our RESET's reply skipped.
		{"crafted +RESET and REPLY SKIP", "AUTH admin adminpw\r\nEVAL \"return redis.status_reply('RESET')\" 0\r\nCLIENT REPLY SKIP\r\n"},
		{"REPLY OFF", "AUTH admin adminpw\r\nCLIENT REPLY OFF\r\n"},
		{"subscribed", "AUTH admin adminpw\r\nSUBSCRIBE ch\r\n"},
		{"MULTI", "AUTH admin adminpw\r\nMULTI\r\nSET k x\r\n"},
		{"MONITOR", "MONITOR\r\nPING\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := redisConn(t, srv.Addr, tt.before)
			if err := runReset(RedisReset(), c); err != nil {
				// Failing is always safe; only some cases may.
				t.Fatalf("reset: %v", err)
			}
			// Nothing owed is left, and the conn is the default user's.
			r, err := c.Do(2*time.Second, "ACL", "WHOAMI")
			if err != nil || r.String() != "default" {
				t.Errorf("after the reset: ACL WHOAMI got %v, %v; want default as the first reply", r, err)
			}
		})
	}
}

// A server without RESET (renamed away here, as on Redis before 6.2)
// refuses the reset: ErrResetRefused, logged once by the pool however
// many conns fail.
func TestRedisResetRefused(t *testing.T) {
	t.Parallel()
	srv := realserver.Redis(t, `rename-command RESET ""`)
	c := redisConn(t, srv.Addr, "")
	if err := runReset(RedisReset(), c); !errors.Is(err, ErrResetRefused) {
		t.Fatalf("reset: got %v; want ErrResetRefused", err)
	}

	var logs logBuffer
	p := newPool(t, Config{Addr: srv.Addr, MaxIdle: DefaultMaxIdle, Reuse: ReuseIfVerified, Reset: RedisReset(), Logger: logs.Logger()})
	for range 3 {
		l := mustGet(t, p)
		if got := roundTrip(t, l.Conn(), "PING\r"); got != "+PONG\r" {
			t.Fatalf("got %q", got)
		}
		if out := l.Release(clean); out != ClosedResetFailed {
			t.Fatalf("Release: got %v; want closed-reset-failed", out)
		}
	}
	if n := strings.Count(logs.String(), "msg=\"pool: upstream refused the reset"); n != 1 {
		t.Errorf("logged %d times; want once:\n%s", n, logs.String())
	}
}

// On a server whose default user needs a password, a conn that was never
// authenticated cannot run the ECHOs: the reset fails at once, rather
// than wait for its ctx.
func TestRedisResetUnauthenticated(t *testing.T) {
	t.Parallel()
	srv := realserver.Redis(t, "requirepass s3cret")
	c := redisConn(t, srv.Addr, "GET k\r\n")
	start := time.Now()
	err := runReset(RedisReset(), c)
	if err == nil || errors.Is(err, ErrResetRefused) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("reset: got %v; want a failure that is neither refused nor a timeout", err)
	}
	t.Logf("failed after %v: %v", time.Since(start), err)
}

func TestMemcachedReset(t *testing.T) {
	t.Parallel()
	srv := realserver.Memcached(t)
	tests := []struct {
		name, before string
	}{
		{"clean", ""},
		{"owed replies", "set k 0 0 1\r\nv\r\nget k\r\n"},
		// An owed ERROR read on its own looks like a server without meta
		// commands: the reset fails, which is safe; read with the MN
		// after it, it is drained.
		{"owed error", "bogus\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := redisConn(t, srv.Addr, tt.before)
			err := runReset(MemcachedReset(), c)
			if tt.name == "owed error" && errors.Is(err, ErrResetRefused) {
				return
			}
			if err != nil {
				t.Fatalf("reset: %v", err)
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "mn\r\n")
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "MN\r\n" {
				t.Errorf("after the reset: got %q, %v; want MN as the first reply", buf, err)
			}
		})
	}
}
