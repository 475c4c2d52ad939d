// Package balance forwards to a set of upstream servers: a pool.Pool per
// server, keeping each server's warm spares and safe reuse, and a policy
// that picks a server per session (round-robin, least-conn, two random
// choices, or client IP by rendezvous hashing), with weights.
//
// A Set learns health two ways. Passively, from traffic: a failed dial
// (a spare's too), a session that the server reset before its first
// byte, or a failed active check counts against the server, and after
// Passive.Failures in a row it is ejected for a cooling time that doubles
// while it keeps failing (never the last healthy server).
// Actively, when Check.Every is set: each server is dialed, and sent
// Check.Send, on a timer; Fall failures mark it down, Rise successes up.
// A server that is ejected or down gets no sessions, and its pool keeps
// nothing idle and dials no spares.
//
// Get fails over: a dial that fails or times out is retried on another
// healthy server within the caller's ctx, so one server's failure costs
// the client nothing while another is healthy. With no healthy server
// left, Get fails at once with ErrNoServer.
//
// Host names are resolved at New and every ResolveEvery: each address is
// a server, an address that leaves drains, a new one joins. Update
// changes the list, weights and policy without dropping a session.
//
// A *Set is a listener.Upstream:
//
//	set, err := balance.New(balance.Config{
//		Servers: []balance.Server{{Addr: "10.0.0.5:6379"}, {Addr: "10.0.0.6:6379"}},
//		Policy:  balance.LeastConn,
//		Pool:    pool.Config{Spares: 4},
//	})
//	if err != nil { ... }
//	defer set.Close()
//	pl, err := listener.New(ln, set, listener.Config{})
//
// Package balance imports pool and nothing of relay's above it.
package balance
