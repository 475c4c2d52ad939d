// Command tlsproxy shows TLS termination with relay: a ProxyListener
// wraps a TLS listener (tls.NewListener over a plain TCP listener) and
// forwards the decrypted bytes to a plain upstream.
//
//	go run ./examples/tlsproxy                          # self-signed cert, embedded echo upstream
//	go run ./examples/tlsproxy -upstream 127.0.0.1:6379 -cert cert.pem -key key.pem
//
// Then, with the address it logs:
//
//	openssl s_client -quiet -connect 127.0.0.1:NNNN
//
// The ProxyListener works with any listener. For a TLS client it
// completes the handshake first (bounded by listener.Config.HandshakeTimeout)
// and only then takes an upstream, so a client that stalls in its
// handshake holds no upstream connection. Upstream connections are pooled
// and dialed ahead as usual; with TLS on the client side the copy runs
// through user-space buffers (splice(2) needs two sockets).
//
// SIGINT or SIGTERM drains the sessions for up to 5 s, cuts the rest,
// and exits 0, as examples/proxy does.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relaykit/relay/internal/selfsigned"

	"github.com/relaykit/relay/listener"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tlsproxy: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// run serves until ctx ends, then shuts down and returns nil. It logs to
// stderr, including the line `msg="tlsproxy listening" addr=...`.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "accept TLS clients on `host:port` (port 0 picks one)")
	upstream := fs.String("upstream", "", "forward to the plain TCP `host:port`; empty starts an embedded line echo")
	certFile := fs.String("cert", "", "PEM certificate `file` (default: a self-signed one made at start)")
	keyFile := fs.String("key", "", "PEM private key `file` for -cert")
	idle := fs.Duration("session-idle-timeout", 5*time.Minute, "end a session idle for `d`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cert, err := loadOrMakeCert(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	up := *upstream
	if up == "" {
		echo, err := startEcho()
		if err != nil {
			return err
		}
		defer echo.close()
		up = echo.ln.Addr().String()
	}

	// The existing listener: plain TCP wrapped in TLS. Anything that
	// implements net.Listener would do.
	raw, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ln := tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})

	// NewAddr: a pool of its own (fresh spares, no reuse), closed with pl.
	pl, err := listener.NewAddr(ln, up, listener.Config{SessionIdleTimeout: *idle, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- pl.Serve() }()
	log.Info("tlsproxy listening", "addr", pl.Addr(), "upstream", up,
		"try", "openssl s_client -quiet -connect "+pl.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-served: // the listener failed
		pl.Close()
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := pl.Shutdown(sctx); err != nil {
		// Sessions outlived the grace and were cut: a normal stop still.
		log.Warn("tlsproxy: sessions cut after the grace", "err", err)
	}
	<-served // ErrClosed
	log.Info("tlsproxy stopped", "sessions", pl.Stats().Sessions)
	return nil
}

// loadOrMakeCert loads -cert/-key, or makes a self-signed certificate for
// localhost and 127.0.0.1 when both are empty.
func loadOrMakeCert(certFile, keyFile string) (tls.Certificate, error) {
	switch {
	case certFile != "" && keyFile != "":
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return c, fmt.Errorf("flags -cert and -key: %w", err)
		}
		return c, nil
	case certFile != "" || keyFile != "":
		return tls.Certificate{}, errors.New("flags -cert and -key go together")
	}
	c, err := selfsigned.New("relay tlsproxy (self-signed)")
	if err != nil {
		return tls.Certificate{}, err
	}
	return c.TLS, nil
}
