// Package listener turns any net.Listener into a TCP forwarder with
// pooled upstream connections.
//
// A ProxyListener accepts each connection from the listener it wraps
// (plain TCP, TLS, a unix socket, a systemd-activated socket), takes an
// upstream connection from its Upstream (a pool.Pool, or a balance.Set
// that picks one of several servers' pools and fails a dial over to
// another server), and copies bytes both ways with
// splice.Join until one side ends. It then closes the client and gives
// the upstream back to the pool with the session's verdict; the pool keeps
// it only as its reuse policy allows (package pool says what each policy
// proves). A client that may still be
// sending (its upstream answered and went away, say) is not closed
// outright, which would make its kernel send a reset that can destroy
// the last reply before the client read it: it gets a FIN, and what it
// still sends is read and discarded until it closes too or LingerTimeout
// passes, after the upstream's release.
//
//	ln, err := net.Listen("tcp", "127.0.0.1:7070")
//	if err != nil { ... }
//	p, err := pool.New(pool.Config{Addr: "127.0.0.1:6379", Spares: 8})
//	if err != nil { ... }
//	defer p.Close()
//	pl, err := listener.New(ln, p, listener.Config{SessionIdleTimeout: 5 * time.Minute})
//	if err != nil { ... }
//	go pl.Serve()
//	...
//	pl.Shutdown(ctx) // stop accepting, let sessions finish until ctx ends
//
// Before an upstream is taken, a session may pass the front door that
// Config describes: Prepare (a load balancer's PROXY header, say), the
// Access rules and MaxSessionsPerIP, and, with Routes, a peek at the TLS
// ClientHello whose server name picks the Upstream. With SendProxy the
// upstream hears the client's address in a PROXY header.
//
// Every accepted connection ends in one place: a client for which no
// upstream could be had within Config.GetTimeout is closed at once, the
// reason is logged and counted, and Serve goes on serving the others.
// Each session runs on its own goroutine, and on a second one while its
// upstream sends (package splice); Shutdown and Close wait for all of
// them, and for the upstreams' release.
package listener
