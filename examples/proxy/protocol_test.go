package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/realserver"
)

// TestRunProtocolRedis drives the proxy with -protocol against a real
// redis-server: a client logs in as another user, selects a database,
// switches to RESP3 and names itself, then hangs up; the next client,
// on the same upstream conn (same CLIENT ID), inherits none of it. With
// -reuse never -protocol redis, the next client gets another conn.
func TestRunProtocolRedis(t *testing.T) {
	srv := realserver.Redis(t, "user admin on >adminpw ~* &* +@all")
	sessionEnded := regexp.MustCompile(`msg="session ended".*`)
	tests := []struct {
		name     string
		args     []string
		wantSame bool
	}{
		{"protocol redis", []string{"-protocol", "redis"}, true},
		{"reuse never", []string{"-protocol", "redis", "-reuse", "never"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			args := append([]string{"-listen", "127.0.0.1:0", "-upstream", srv.Addr, "-spares", "0", "-max-open", "1",
				"-log-level", "debug"}, tt.args...)
			r := startProxy(t, args...)
			var ids [2]string
			for i := range ids {
				c, err := realserver.DialRedis(r.addr)
				if err != nil {
					t.Fatal(err)
				}
				for _, cmd := range [][]string{{"ACL", "WHOAMI"}, {"CLIENT", "INFO"}, {"CLIENT", "GETNAME"}, {"CLIENT", "ID"},
					{"AUTH", "admin", "adminpw"}, {"SELECT", "9"}, {"HELLO", "3"}, {"CLIENT", "SETNAME", "first"}} {
					reply, err := c.Do(5*time.Second, cmd...)
					if err != nil {
						t.Fatalf("session %d: %v: %v; log:\n%s", i+1, cmd, err, r.stderr)
					}
					if err := reply.Err(); err != nil {
						t.Fatalf("session %d: %v: %v", i+1, cmd, err)
					}
					switch cmd[1] {
					case "WHOAMI":
						if reply.Str != "default" {
							t.Errorf("session %d: logged in as %q at start; want default", i+1, reply.Str)
						}
					case "INFO":
						if !strings.Contains(reply.Str, " db=0 ") || !strings.Contains(reply.Str, " resp=2") {
							t.Errorf("session %d: CLIENT INFO at start: %q; want db=0 and resp=2", i+1, reply.Str)
						}
					case "GETNAME":
						if !reply.Null {
							t.Errorf("session %d: name %q at start; want none", i+1, reply.Str)
						}
					case "ID":
						ids[i] = reply.Str
					}
				}
				c.Close()
				r.waitLogN(sessionEnded, i+1)
			}
			if got := ids[0] == ids[1]; got != tt.wantSame {
				t.Errorf("sessions served by upstream clients %s and %s; want same=%t; log:\n%s", ids[0], ids[1], tt.wantSame, r.stderr)
			}
			r.mustStop()
		})
	}
}
