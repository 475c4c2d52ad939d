package realserver

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nginxStreamModules are where Debian (libnginx-mod-stream) and other
// distributions put the dynamic stream module.
var nginxStreamModules = []string{
	"/usr/lib/nginx/modules/ngx_stream_module.so",
	"/usr/lib64/nginx/modules/ngx_stream_module.so",
	"/usr/share/nginx/modules/ngx_stream_module.so",
}

// NginxStream starts nginx with one stream (TCP) server on a free
// loopback port, in the foreground and without a master process, with
// its pid file and logs kept out of the system's paths (the config and
// the pid file are in a temp dir; the error log goes to stderr, see
// Output). proxyProtocol adds proxy_protocol to the listen directive
// (the server then expects a PROXY header on each connection, and
// $proxy_protocol_addr and $proxy_protocol_port are its source); body
// is the rest of the server block, for example
//
//	return "$proxy_protocol_addr:$proxy_protocol_port\n";
//
// It skips the test when nginx or its stream module is not installed
// (see RequireEnv).
func NginxStream(tb testing.TB, proxyProtocol bool, body string) *Server {
	tb.Helper()
	bin := lookPath(tb, "nginx", "nginx libnginx-mod-stream")
	load := ""
	if out, err := exec.Command(bin, "-V").CombinedOutput(); err != nil || strings.Contains(string(out), "--with-stream=dynamic") {
		module := ""
		for _, m := range nginxStreamModules {
			if _, err := os.Stat(m); err == nil {
				module = m
				break
			}
		}
		if module == "" {
			missing(tb, "nginx's stream module ("+strings.Join(nginxStreamModules, ", ")+") not found: this test needs it (apt-get install libnginx-mod-stream)")
		}
		load = "load_module " + module + ";\n"
	}
	dir := tb.TempDir()
	listen := ""
	if proxyProtocol {
		listen = " proxy_protocol"
	}
	return start(tb, func(port int) *exec.Cmd {
		conf := fmt.Sprintf(`%sdaemon off;
master_process off;
pid %s;
error_log stderr notice;
events { worker_connections 256; }
stream {
	server {
		listen 127.0.0.1:%d%s;
		%s
	}
}
`, load, filepath.Join(dir, "nginx.pid"), port, listen, body)
		path := filepath.Join(dir, fmt.Sprintf("nginx-%d.conf", port))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			tb.Fatal(err)
		}
		return exec.Command(bin, "-p", dir, "-e", "stderr", "-c", path)
	}, func(c net.Conn) error {
		if proxyProtocol {
			if _, err := io.WriteString(c, "PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"); err != nil {
				return err
			}
		}
		// Listening is ready; the read only gives nginx a moment to
		// take the header, whatever the body does next.
		var b [1]byte
		c.Read(b[:])
		return nil
	})
}

// missing skips the test for a missing part, or fails it under
// RequireEnv.
func missing(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv(RequireEnv) != "" {
		tb.Fatalf("%s; %s is set, so a missing server is a failure", msg, RequireEnv)
	}
	tb.Skip(msg)
}
