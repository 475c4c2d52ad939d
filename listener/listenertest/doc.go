// Package listenertest runs a relay forwarder inside a Go test, in front
// of a real upstream, with network faults the test sets and changes at
// any moment: latency, bandwidth, slicing, data limits, blackholes,
// resets, slow closes, an unreachable or slow upstream, a forwarder that
// goes down. It is a toxiproxy to embed, in the spirit of
// net/http/httptest: no server to run, no API to drive, no port to pick.
//
//	func TestClientSurvivesResets(t *testing.T) {
//		srv := startMyServer(t) // the real server or a fake, on 127.0.0.1:0
//		fw := listenertest.New(t, srv.Addr())
//		fw.Set(listenertest.Downstream, listenertest.ResetAfterBytes(0).WithProbability(0.3))
//
//		client := mylib.Dial(fw.Addr()) // the code under test dials the forwarder
//		// ... exercise the client ...
//
//		fw.Set(listenertest.Both) // clear the faults
//		fw.Down()                 // reset live sessions, refuse new ones
//		fw.Up()
//		fw.SetUnreachable(true) // upstream dials hang
//	}
//
// New starts a listener.ProxyListener on 127.0.0.1:0 with a pool.Pool
// that dials the upstream, so the bytes take the real relay path and
// faults also decide what the pool does with an upstream conn. It stops
// the forwarder in t.Cleanup, and reports by name any session that would
// not end.
//
// # Faults
//
// A Fault acts on one direction of every session: Upstream (client to
// upstream) or Downstream (upstream to client); Forwarder.Set puts a list
// of them in effect in a direction, replacing the previous list. Faults
// act on chunks: what one read from the client returned (Upstream), what
// one write toward it carries (Downstream). Set may be called from any
// goroutine while sessions are live; each session reads the fault list
// once per chunk, without a lock, and waits (for a pause, a Blackhole, a
// latency) never hold one, so changing faults cannot deadlock.
//
// Faults keep TCP backpressure: a held direction stops reading from its
// sender, and at most one chunk is held by the forwarder, so a slow or
// stopped direction makes the sender's writes block rather than letting
// memory grow.
//
// Each fault can apply with a probability (Fault.WithProbability), drawn
// per chunk or once per session (Fault.PerSession), from a PCG source per
// session and direction, seeded from the test's name unless WithSeed
// says otherwise: a failing test replays its draws. New logs the seed.
//
// Forwarder-wide faults are methods: Down and Up, SetUnreachable (dials
// hang until their context ends) and SetConnectDelay (slow connect).
//
// # Assertions and exact control
//
// Sessions and Session return handles on sessions, with their bytes each
// way and state, and act on one session: Pause, Resume, Cut, Reset,
// CloseWrite. Counts reports totals since New, and the Wait methods wait
// for them with a ctx: sessions accepted, upstreams returned to the pool,
// client FINs passed on. A Hook fault calls a function for each chunk, which decides its
// fate (Pass, Delay, Drop, Reset), for tests that need exact control
// instead of timers.
package listenertest
