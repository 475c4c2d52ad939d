package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// ioCopyProxy is the plain Go forwarder people write first: one upstream
// dial per client, io.Copy each way (splice(2) between TCP conns), a
// half-close passed on, both closed when both copies are done.
type ioCopyProxy struct {
	upstream string
	tls      *tls.Config // nil: plain TCP upstream

	mu    sync.Mutex
	conns map[net.Conn]struct{} // conns of live sessions; nil once stopping
	wg    sync.WaitGroup        // one per session
}

// serve accepts until ln is closed, then closes the conns of the
// sessions still open and waits for them.
func (p *ioCopyProxy) serve(ln net.Listener) error {
	p.conns = map[net.Conn]struct{}{}
	defer func() {
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
		p.wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.handle(c) }()
	}
}

// track adds c to the live set, or reports false when stopping.
func (p *ioCopyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *ioCopyProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *ioCopyProxy) handle(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	if !p.track(u) {
		return
	}
	defer p.untrack(u)
	if p.tls != nil {
		u = tls.Client(u, p.tls)
	}
	done := make(chan struct{})
	go func() { copyHalf(u, c); close(done) }()
	copyHalf(c, u)
	<-done
}

// copyHalf copies src to dst, then passes the end on as a half-close.
func copyHalf(dst, src net.Conn) {
	io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}

func runIOCopy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("iocopy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:7071", "listen address")
	upstream := fs.String("upstream", "", "upstream host:port (required)")
	caFile := fs.String("upstream-tls-ca", "", "originate TLS to the upstream, trusting this CA file (sessions resume)")
	serverName := fs.String("upstream-tls-server-name", tlsServerName, "TLS server name to verify")
	timeout := fs.Duration("timeout", time.Hour, "stop after this long")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *upstream == "" {
		return errors.New("-upstream: required")
	}
	raiseNoFile(stderr)
	p := &ioCopyProxy{upstream: *upstream}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-upstream-tls-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-upstream-tls-ca %s: no certificate found", *caFile)
		}
		p.tls = &tls.Config{RootCAs: roots, ServerName: *serverName, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "iocopy: %s -> %s\n", ln.Addr(), *upstream)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	return p.serve(ln)
}
