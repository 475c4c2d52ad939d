package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
	"github.com/relaykit/relay/internal/selfsigned"

	"go.uber.org/goleak"
)

// noLeaks checks, after the test and all its cleanups, that it left no
// goroutine behind. Registered first, it runs last.
func noLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// waitFor bounds every wait in these tests. It is generous on purpose:
// the tests assert outcomes, never speed, and CI machines are noisy.
const waitFor = 20 * time.Second

// proxyRun is one call of run on its own goroutine.
type proxyRun struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
	stderr *logbuf.Buffer
	stdout *logbuf.Buffer
	addr   string // from the "relay listening" log line
}

var listeningRE = regexp.MustCompile(`msg="relay listening" addr=(\S+)`)

// startProxy calls run(ctx, args, ...) and waits for the "relay
// listening" line, which gives the bound address. The run is stopped at
// the end of the test if the test did not stop it.
func startProxy(t *testing.T, args ...string) *proxyRun {
	t.Helper()
	return startProxyWith(t, runOptions{}, args...)
}

// startProxyWith is startProxy calling runWith with opts.
func startProxyWith(t *testing.T, opts runOptions, args ...string) *proxyRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &proxyRun{t: t, cancel: cancel, done: make(chan struct{}), stderr: new(logbuf.Buffer), stdout: new(logbuf.Buffer)}
	go func() {
		r.err = runWith(ctx, args, r.stdout, r.stderr, opts)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop() })
	r.addr = r.waitLog(listeningRE)[1]
	return r
}

// waitLog waits until re matches the log and returns the first match's
// submatches. It fails the test if run returns first.
func (r *proxyRun) waitLog(re *regexp.Regexp) []string {
	r.t.Helper()
	return r.waitLogN(re, 1)[0]
}

// waitLogN waits until re matches the log n times and returns the matches.
func (r *proxyRun) waitLogN(re *regexp.Regexp, n int) [][]string {
	r.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		if m := re.FindAllStringSubmatch(r.stderr.String(), -1); len(m) >= n {
			return m
		}
		select {
		case <-r.done:
			if m := re.FindAllStringSubmatch(r.stderr.String(), -1); len(m) >= n {
				return m
			}
			r.t.Fatalf("run returned %v before the log matched %q %d times; log:\n%s", r.err, re, n, r.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("log did not match %q %d times within %v; log:\n%s", re, n, waitFor, r.stderr)
		}
	}
}

// stop cancels run's ctx (what SIGTERM does) and returns run's error.
// It fails the test if run does not return.
func (r *proxyRun) stop() error {
	r.t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitFor):
		r.t.Fatalf("run did not return within %v of cancel; log:\n%s", waitFor, r.stderr)
		return nil
	}
}

// mustStop is stop, failing the test unless run returned nil.
func (r *proxyRun) mustStop() {
	r.t.Helper()
	if err := r.stop(); err != nil {
		r.t.Fatalf("run: got %v; want nil; log:\n%s", err, r.stderr)
	}
}

// roundTrip dials addr (with dial, or plain TCP when nil), sends line and
// a newline, and returns the first line of the reply without its newline.
// It closes the connection before it returns.
func roundTrip(t *testing.T, addr, line string, dial func(string) (net.Conn, error)) (string, error) {
	t.Helper()
	if dial == nil {
		dial = func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, waitFor) }
	}
	c, err := dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(reply, "\n"), err
}

// demoReplyRE matches the demo upstream's echo and captures the
// connection number.
var demoReplyRE = regexp.MustCompile(`^upstream conn #(\d+): (.*)$`)

// testCert is a self-signed certificate (its own CA) written to a temp dir.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

// newTestCert makes a certificate for 127.0.0.1, or for the given DNS
// names only.
func newTestCert(t *testing.T, dnsNames ...string) testCert {
	t.Helper()
	hosts := dnsNames
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	c, err := selfsigned.New("relay test", hosts...)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := c.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return testCert{certFile: certFile, keyFile: keyFile, pool: c.Roots}
}

// writeFile writes content to a new file in a temp dir and returns its name.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
