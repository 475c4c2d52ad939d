package listener

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/realserver"
	"github.com/relaykit/relay/pool"
)

// These tests run a real redis-server (see package realserver) behind a
// ProxyListener whose pool reuses connections, and check that no session
// state of one client reaches the next one: each case has a client set
// some state and hang up, and a later client on the same upstream
// connection look for it.

const redisOp = 5 * time.Second // bound on one command in these tests

// redisACL makes a default user that may read only public:* keys and an
// admin that may read everything.
var redisACL = []string{
	"user default on nopass ~public:* &* +@all",
	"user admin on >adminpw ~* &* +@all",
}

// redisState is one kind of session state: set runs on the first
// client, which then hangs up; check runs on the next client and
// returns what leaked, or nil. reused says whether the first client's
// upstream conn is expected to serve the next one (a session that ends
// unclean closes it instead).
type redisState struct {
	name   string
	set    func(t *testing.T, c *realserver.Conn, direct *realserver.Conn)
	check  func(c *realserver.Conn, direct *realserver.Conn) error
	reused bool
}

// do runs a command on c and fails the test on an error of the conn.
func do(t *testing.T, c *realserver.Conn, args ...string) realserver.Reply {
	t.Helper()
	r, err := c.Do(redisOp, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}

// clientID returns the conn's CLIENT ID, failing the test on any other
// reply (an error's text must not pass for an ID that two conns share).
func clientID(t *testing.T, c *realserver.Conn) string {
	t.Helper()
	r := do(t, c, "CLIENT", "ID")
	if r.Type != ':' {
		t.Fatalf("CLIENT ID: got %v; want an integer", r)
	}
	return r.Str
}

// want runs a command and returns an error unless its reply reads want.
func want(c *realserver.Conn, want string, args ...string) error {
	r, err := c.Do(redisOp, args...)
	if err != nil {
		return fmt.Errorf("%v: %v", args, err)
	}
	if r.String() != want {
		return fmt.Errorf("%v: got %v; want %v", args, r, want)
	}
	return nil
}

// clientInfo returns field of CLIENT INFO on c.
func clientInfo(c *realserver.Conn, field string) (string, error) {
	r, err := c.Do(redisOp, "CLIENT", "INFO")
	if err != nil {
		return "", err
	}
	for _, kv := range strings.Fields(r.Str) {
		if v, ok := strings.CutPrefix(kv, field+"="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("CLIENT INFO has no %s: %q", field, r.Str)
}

// wantInfo returns an error unless CLIENT INFO's field reads want.
func wantInfo(c *realserver.Conn, field, want string) error {
	got, err := clientInfo(c, field)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("CLIENT INFO %s=%s; want %s", field, got, want)
	}
	return nil
}

// sendRaw writes raw bytes (several commands at once, say).
func sendRaw(t *testing.T, c *realserver.Conn, raw string) {
	t.Helper()
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
}

// readReply reads one reply of c.
func readReply(t *testing.T, c *realserver.Conn) realserver.Reply {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(redisOp))
	defer c.SetReadDeadline(time.Time{})
	r, err := c.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var redisStates = []redisState{
	{name: "AUTH as another user", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) {
			if r := do(t, c, "AUTH", "admin", "adminpw"); r.String() != "OK" {
				t.Fatalf("AUTH: %v", r)
			}
		},
		check: func(c, _ *realserver.Conn) error {
			if err := want(c, "default", "ACL", "WHOAMI"); err != nil {
				return err
			}
			if r, err := c.Do(redisOp, "GET", "secret:k"); err != nil || !strings.HasPrefix(r.Str, "NOPERM") {
				return fmt.Errorf("GET secret:k as default: got %v, %v; want -NOPERM", r, err)
			}
			return nil
		}},
	{name: "SELECT", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) { do(t, c, "SELECT", "9") },
		check: func(c, _ *realserver.Conn) error {
			return wantInfo(c, "db", "0")
		}},
	{name: "HELLO 3", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) {
			if r := do(t, c, "HELLO", "3"); r.Type != '%' {
				t.Fatalf("HELLO 3: %v", r)
			}
		},
		check: func(c, _ *realserver.Conn) error {
			// A RESP3 conn answers HGETALL with a map.
			if r, err := c.Do(redisOp, "HGETALL", "public:h"); err != nil || r.Type != '*' {
				return fmt.Errorf("HGETALL: got type %q (%v, %v); want a RESP2 array", r.Type, r, err)
			}
			return wantInfo(c, "resp", "2")
		}},
	{name: "CLIENT SETNAME", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) { do(t, c, "CLIENT", "SETNAME", "first") },
		check: func(c, _ *realserver.Conn) error {
			return want(c, "(nil)", "CLIENT", "GETNAME")
		}},
	{name: "CLIENT TRACKING", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) {
			do(t, c, "HELLO", "3")
			do(t, c, "CLIENT", "TRACKING", "ON")
			do(t, c, "GET", "public:tracked")
		},
		check: func(c, direct *realserver.Conn) error {
			flags, err := clientInfo(c, "flags")
			if err != nil {
				return err
			}
			if strings.Contains(flags, "t") {
				return fmt.Errorf("CLIENT INFO flags=%s: tracking is on", flags)
			}
			// An invalidation pushed to the conn would reach this client.
			if err := want(direct, "OK", "SET", "public:tracked", "x"); err != nil {
				return err
			}
			return want(c, "PONG", "PING")
		}},
	{name: "WATCH", reused: true,
		// A watched key changed (by its watcher too, and in whatever
		// database the conn is in) makes a later EXEC abort.
		set: func(t *testing.T, c, _ *realserver.Conn) {
			do(t, c, "WATCH", "public:w")
			do(t, c, "SET", "public:w", "changed")
		},
		check: func(c, _ *realserver.Conn) error {
			// Still watched, EXEC would abort (a nil reply).
			if err := want(c, "OK", "MULTI"); err != nil {
				return err
			}
			if err := want(c, "QUEUED", "SET", "public:w2", "x"); err != nil {
				return err
			}
			return want(c, "*[OK]", "EXEC")
		}},
	{name: "SUBSCRIBE", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) { do(t, c, "SUBSCRIBE", "news") },
		check: func(c, direct *realserver.Conn) error {
			if err := wantInfo(c, "sub", "0"); err != nil {
				return err
			}
			return want(direct, "0", "PUBLISH", "news", "for the first client only")
		}},
	{name: "SUBSCRIBE over RESP3", reused: true,
		// In RESP3 a subscribed conn answers PING with +PONG: a PING
		// fence passes it on still subscribed.
		set: func(t *testing.T, c, _ *realserver.Conn) {
			do(t, c, "HELLO", "3")
			do(t, c, "SUBSCRIBE", "news")
		},
		check: func(c, direct *realserver.Conn) error {
			if err := want(direct, "0", "PUBLISH", "news", "for the first client only"); err != nil {
				return err
			}
			return wantInfo(c, "sub", "0")
		}},
	{name: "PSUBSCRIBE", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) { do(t, c, "PSUBSCRIBE", "n*") },
		check: func(c, _ *realserver.Conn) error {
			return wantInfo(c, "psub", "0")
		}},
	{name: "SSUBSCRIBE", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) { do(t, c, "SSUBSCRIBE", "shard") },
		check: func(c, _ *realserver.Conn) error {
			return wantInfo(c, "ssub", "0")
		}},
	{name: "MULTI without EXEC", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) {
			do(t, c, "MULTI")
			do(t, c, "SET", "public:m", "queued")
		},
		check: func(c, _ *realserver.Conn) error {
			if err := wantInfo(c, "multi", "-1"); err != nil {
				return err
			}
			return want(c, "OK", "SET", "public:m2", "x")
		}},
	{name: "CLIENT REPLY OFF", reused: true,
		// The PING's reply comes last, so the session ends clean.
		set: func(t *testing.T, c, _ *realserver.Conn) {
			sendRaw(t, c, "PING\r\nCLIENT REPLY OFF\r\n")
			readReply(t, c)
		},
		check: func(c, _ *realserver.Conn) error { return want(c, "PONG", "PING") }},
	{name: "CLIENT REPLY SKIP", reused: true,
		set: func(t *testing.T, c, _ *realserver.Conn) {
			sendRaw(t, c, "PING\r\nCLIENT REPLY SKIP\r\n")
			readReply(t, c)
		},
		check: func(c, _ *realserver.Conn) error { return want(c, "PONG", "PING") }},
	{name: "MONITOR", reused: true,
		set: func(t *testing.T, c, direct *realserver.Conn) {
			do(t, c, "MONITOR")
			do(t, direct, "SET", "public:seen", "by the monitor")
			readReply(t, c) // the feed line
		},
		check: func(c, direct *realserver.Conn) error {
			flags, err := clientInfo(c, "flags")
			if err != nil {
				return err
			}
			if strings.Contains(flags, "O") {
				return fmt.Errorf("CLIENT INFO flags=%s: still a monitor", flags)
			}
			return want(c, "PONG", "PING")
		}},
	{name: "BLPOP in flight", reused: false,
		// The reset waits behind the BLPOP until ResetTimeout and fails.
		set: func(t *testing.T, c, _ *realserver.Conn) {
			sendRaw(t, c, "PING\r\nBLPOP public:list 0\r\n")
			readReply(t, c)
		},
		check: func(c, direct *realserver.Conn) error {
			if err := want(direct, "1", "LPUSH", "public:list", "v"); err != nil {
				return err
			}
			return want(c, "*[public:list v]", "BLPOP", "public:list", "1")
		}},
	{name: "large reply cut half-way", reused: false,
		set: func(t *testing.T, c, direct *realserver.Conn) {
			do(t, direct, "SET", "public:big", strings.Repeat("x", 4<<20))
			sendRaw(t, c, "GET public:big\r\n")
			c.SetReadDeadline(time.Now().Add(redisOp))
			if _, err := io.ReadFull(c.Conn, make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
		},
		check: func(c, _ *realserver.Conn) error { return want(c, "PONG", "PING") }},
	{name: "pipelined RESET and AUTH", reused: true,
		// The login after the client's own RESET must not survive.
		set: func(t *testing.T, c, _ *realserver.Conn) {
			sendRaw(t, c, "AUTH admin adminpw\r\nRESET\r\nAUTH admin adminpw\r\n")
			for range 3 {
				readReply(t, c)
			}
		},
		check: func(c, _ *realserver.Conn) error { return want(c, "default", "ACL", "WHOAMI") }},
}

// runRedisStates runs every state in redisStates through a proxy whose
// pool resets with reset, against one redis-server, and returns what
// leaked per state (nil: nothing), whether each state's conn was reused,
// and the number of sessions and upstream connections the server saw.
func runRedisStates(t *testing.T, srv *realserver.Server, reset pool.Reset) (leaks map[string]error, reused map[string]bool, sessions, conns int) {
	// One conn at a time: the next client gets the conn the last one
	// used, if the pool kept it.
	l := startProxy(t, pool.Config{Addr: srv.Addr, MaxOpen: 1, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfVerified, Reset: reset,
		ResetTimeout: 300 * time.Millisecond}, Config{})
	direct, err := realserver.DialRedis(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	connsBefore := redisConnections(t, direct)

	leaks, reused = map[string]error{}, map[string]bool{}
	for _, st := range redisStates {
		for round := range 3 {
			first, err := realserver.DialRedis(l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			id := clientID(t, first)
			st.set(t, first, direct)
			first.Close()
			sessions++

			next, err := realserver.DialRedis(l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			nextID := clientID(t, next)
			if err := st.check(next, direct); err != nil && leaks[st.name] == nil {
				leaks[st.name] = fmt.Errorf("round %d: %w", round, err)
			}
			if nextID == id {
				reused[st.name] = true
			}
			next.Close()
			sessions++
		}
	}
	// Let the last release finish before counting.
	waitFor(t, "the last session to end", func() bool { return l.Stats().Active == 0 })
	return leaks, reused, sessions, redisConnections(t, direct) - connsBefore
}

// redisConnections returns the server's total_connections_received.
func redisConnections(t *testing.T, direct *realserver.Conn) int {
	t.Helper()
	info := do(t, direct, "INFO", "stats").Str
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("INFO stats has no total_connections_received: %q", info)
	return 0
}

// TestRedisResetLeaksNoState: with pool.RedisReset, no state of any kind
// in redisStates reaches a later client, while one upstream connection
// serves many sessions.
func TestRedisResetLeaksNoState(t *testing.T) {
	t.Parallel()
	srv := realserver.Redis(t, redisACL...)
	leaks, reused, sessions, conns := runRedisStates(t, srv, pool.RedisReset())
	for _, st := range redisStates {
		if err := leaks[st.name]; err != nil {
			t.Errorf("%s: leaked to the next client: %v", st.name, err)
		}
		if st.reused && !reused[st.name] {
			t.Errorf("%s: the next client never got the same upstream conn; want reuse", st.name)
		}
	}
	// The proxy's sessions and the test's direct conn; the states whose
	// sessions end unclean cost a dial each.
	if conns > sessions/4 {
		t.Errorf("%d sessions made %d upstream connections; want far fewer (reuse)", sessions, conns)
	}
	t.Logf("%d sessions, %d upstream connections", sessions, conns)
}

// TestRedisResetAfterRequirePass: on a server whose default user needs a
// password, RESET logs the conn out and the ECHO after it is refused;
// the reset still proves itself, and the next client must AUTH again.
func TestRedisResetAfterRequirePass(t *testing.T) {
	t.Parallel()
	srv := realserver.Redis(t, "requirepass s3cret")
	l := startProxy(t, pool.Config{Addr: srv.Addr, MaxOpen: 1, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfVerified, Reset: pool.RedisReset()}, Config{})
	var ids []string
	for range 5 {
		c, err := realserver.DialRedis(l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if r := do(t, c, "GET", "k"); !strings.HasPrefix(r.Str, "NOAUTH") {
			t.Errorf("GET before AUTH: got %v; want -NOAUTH (a login leaked)", r)
		}
		if r := do(t, c, "AUTH", "s3cret"); r.Type != '+' || r.Str != "OK" {
			t.Fatalf("AUTH: got %v; want +OK", r)
		}
		ids = append(ids, clientID(t, c))
		c.Close()
		waitFor(t, "the session to end", func() bool { return l.Stats().Active == 0 })
	}
	if ids[0] != ids[len(ids)-1] {
		t.Errorf("client IDs %v; want one upstream conn for all (reuse)", ids)
	}
	if st := l.Pool().Stats(); st.Closed[pool.ClosedResetFailed] != 0 {
		t.Errorf("%d resets failed; want none", st.Closed[pool.ClosedResetFailed])
	}
}

// TestRedisPingFenceLeaks proves the state test's teeth: behind a PING
// fence, which aligns the byte stream but resets nothing, the states
// that a fence cannot see reach the next client.
func TestRedisPingFenceLeaks(t *testing.T) {
	t.Parallel()
	srv := realserver.Redis(t, redisACL...)
	leaks, _, _, _ := runRedisStates(t, srv, pool.Fence([]byte("PING\r\n"), []byte("+PONG\r\n")))
	for _, name := range []string{"AUTH as another user", "SELECT", "HELLO 3", "CLIENT SETNAME", "CLIENT TRACKING", "WATCH", "SUBSCRIBE over RESP3"} {
		if leaks[name] == nil {
			t.Errorf("%s: no leak found behind a PING fence; the check cannot see this state", name)
		}
	}
}
