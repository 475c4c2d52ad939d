package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
	"github.com/relaykit/relay/internal/selfsigned"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 20 * time.Second

// TestTLSProxy runs the program, dials it with TLS, gets the echo from
// the plain upstream behind it, and stops it by canceling ctx. The
// certificate is either made at start (the client then checks only that
// it is for 127.0.0.1) or given with -cert/-key (and verified in full).
func TestTLSProxy(t *testing.T) {
	certFile, keyFile, roots := writeCert(t)
	tests := []struct {
		name   string
		args   []string
		client *tls.Config
	}{
		{"self-signed at start", nil, &tls.Config{
			InsecureSkipVerify: true, // made at start; checked below instead
			VerifyConnection: func(cs tls.ConnectionState) error {
				return cs.PeerCertificates[0].VerifyHostname("127.0.0.1")
			},
		}},
		{"-cert and -key", []string{"-cert", certFile, "-key", keyFile}, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stderr := new(logbuf.Buffer)
			done := make(chan error, 1)
			go func() { done <- run(ctx, tt.args, stderr) }()

			addr := waitLog(t, stderr, done, regexp.MustCompile(`msg="tlsproxy listening" addr=(\S+)`))[1]
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: waitFor}, Config: tt.client}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("TLS dial %s: %v", addr, err)
			}
			c.SetDeadline(time.Now().Add(waitFor))
			if _, err := c.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			reply, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil || reply != "echo: hello\n" {
				t.Errorf("reply: got %q, %v; want \"echo: hello\\n\"", reply, err)
			}

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run after cancel: got %v; want nil", err)
				}
			case <-time.After(waitFor):
				t.Fatalf("run did not return within %v of cancel; log:\n%s", waitFor, stderr)
			}
			if !strings.Contains(stderr.String(), `msg="tlsproxy stopped"`) {
				t.Errorf("log lacks \"tlsproxy stopped\"; got:\n%s", stderr)
			}
		})
	}
}

func TestTLSProxyBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-cert", "only.pem"},
		{"-cert", "/nonexistent/c.pem", "-key", "/nonexistent/k.pem"},
		{"-nope"},
	} {
		err := run(t.Context(), args, new(logbuf.Buffer))
		if err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("run(%q): got %v; want a usage error", args, err)
		}
	}
}

func waitLog(t *testing.T, log *logbuf.Buffer, done <-chan error, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		if m := re.FindStringSubmatch(log.String()); m != nil {
			return m
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v before logging %q; log:\n%s", err, re, log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within %v; log:\n%s", re, waitFor, log)
		}
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	c, err := selfsigned.New("relay test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = c.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Roots
}
