package listener

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/relaykit/relay/pool"
)

// TestListenerKinds wraps the listeners people hand to New: a unix
// socket, and a listener rebuilt from an inherited descriptor, as under
// systemd socket activation (net.FileListener on fd 3 there; here a
// descriptor of our own). TLS has its own test.
func TestListenerKinds(t *testing.T) {
	up := startServer(t, echo)
	tests := []struct {
		name    string
		listen  func(t *testing.T) net.Listener
		network string
	}{
		{"unix", func(t *testing.T) net.Listener {
			ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "relay.sock"))
			if err != nil {
				t.Skip(err)
			}
			return ln
		}, "unix"},
		{"from a file descriptor", func(t *testing.T) net.Listener {
			tcp, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f, err := tcp.(*net.TCPListener).File()
			tcp.Close()
			if err != nil {
				t.Fatal(err)
			}
			// net.FileListener dups the descriptor, so f is ours to close.
			// (Wrapping f.Fd() in a second *os.File closed it twice, and
			// the second close hit whatever other test reused the number.)
			defer f.Close()
			ln, err := net.FileListener(f)
			if err != nil {
				t.Fatal(err)
			}
			return ln
		}, "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pool.New(pool.Config{Addr: up.Addr(), Spares: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			l, err := New(tt.listen(t), p, Config{})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- l.Serve() }()
			t.Cleanup(func() { l.Close() }) // also when the test fails first
			c, err := net.Dial(tt.network, l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			got, err := exchange(c, "kind\n")
			c.Close()
			if err != nil || got != "kind\n" {
				t.Fatalf("got %q, %v; want the echo", got, err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			<-served
			if st := l.Stats(); st.Sessions != 1 || st.Active != 0 {
				t.Fatalf("Sessions=%d Active=%d; want 1 and 0", st.Sessions, st.Active)
			}
		})
	}
}
