package realserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// HAProxy starts haproxy in the foreground (-db) on a free loopback
// port, in TCP mode, forwarding every connection to the one server that
// serverLine describes, as a haproxy.cfg "server" line after its name:
// an address and options, for example "127.0.0.1:7070 send-proxy-v2".
// The config file is written to a temp dir. It skips the test when
// haproxy is not installed (see RequireEnv).
func HAProxy(tb testing.TB, serverLine string) *Server {
	tb.Helper()
	bin := lookPath(tb, "haproxy", "haproxy")
	dir := tb.TempDir()
	return start(tb, func(port int) *exec.Cmd {
		conf := fmt.Sprintf(`global
	maxconn 256

defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s

frontend front
	bind 127.0.0.1:%d
	default_backend back

backend back
	server s1 %s
`, port, serverLine)
		path := filepath.Join(dir, fmt.Sprintf("haproxy-%d.cfg", port))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			tb.Fatal(err)
		}
		return exec.Command(bin, "-db", "-f", path)
	}, func(net.Conn) error { return nil }) // listening is ready
}
