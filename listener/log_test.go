package listener

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
	"github.com/relaykit/relay/pool"
)

// The "session ended" record is written at Debug and only then: the
// listener skips the SessionInfo when the record is off and no
// OnSessionEnd wants it.
func TestSessionEndedRecord(t *testing.T) {
	up := startServer(t, echo)
	for _, tc := range []struct {
		level slog.Level
		want  int
	}{{slog.LevelDebug, 1}, {slog.LevelInfo, 0}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var buf logbuf.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			l := startProxy(t, pool.Config{Addr: up.Addr()}, Config{Logger: logger})
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitFor(t, "the session to end", func() bool { st := l.Stats(); return st.Sessions == 1 && st.Active == 0 })
			out := buf.String()
			if got := strings.Count(out, `msg="session ended"`); got != tc.want {
				t.Fatalf("%d session-ended records at %v; want %d:\n%s", got, tc.level, tc.want, out)
			}
			if tc.want == 1 && !strings.Contains(out, "to_upstream=4") {
				t.Errorf("the record does not carry the byte count:\n%s", out)
			}
		})
	}
}
