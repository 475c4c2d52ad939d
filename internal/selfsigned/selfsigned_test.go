package selfsigned

import (
	"crypto/tls"
	"io"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHandshake(t *testing.T) {
	tests := []struct {
		name, dial, serverName string
		hosts                  []string
		ok                     bool
	}{
		{"default hosts by IP", "127.0.0.1:0", "", nil, true},
		{"default hosts by name", "127.0.0.1:0", "localhost", nil, true},
		{"a name not covered", "127.0.0.1:0", "example.test", nil, false},
		{"DNS name only, dialed by IP", "127.0.0.1:0", "", []string{"relay.test"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New("test", tt.hosts...)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", tt.dial, &tls.Config{Certificates: []tls.Certificate{c.TLS}})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan struct{})
			defer func() { ln.Close(); <-served }()
			go func() {
				defer close(served)
				s, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(s, "hi")
				s.Close()
			}()
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: c.Roots, ServerName: tt.serverName})
			if err == nil {
				defer conn.Close()
			}
			if got := err == nil; got != tt.ok {
				t.Fatalf("handshake ok: got %v (%v); want %v", got, err, tt.ok)
			}
		})
	}
}

func TestWriteFiles(t *testing.T) {
	c, err := New("test")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := c.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("LoadX509KeyPair of the written files: %v", err)
	}
}
