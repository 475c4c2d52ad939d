package listenertest

import (
	"fmt"
	"time"
)

// Direction names one or both directions of a session's bytes, as
// toxiproxy's streams do.
type Direction uint8

const (
	// Upstream is client -> upstream: the requests.
	Upstream Direction = 1 << iota
	// Downstream is upstream -> client: the replies.
	Downstream
	// Both is Upstream and Downstream.
	Both = Upstream | Downstream
)

// String returns "upstream", "downstream", "both" or "none", as
// failure messages show a direction.
func (d Direction) String() string {
	switch d {
	case 0:
		return "none"
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// indexes returns the direction indexes (0 upstream, 1 downstream) that d
// names. It panics on a Direction other than Upstream, Downstream or Both.
func (d Direction) indexes(who string) []int {
	switch d {
	case Upstream:
		return []int{0}
	case Downstream:
		return []int{1}
	case Both:
		return []int{0, 1}
	}
	panic(fmt.Sprintf("listenertest: %s: invalid Direction %d (want Upstream, Downstream or Both)", who, uint8(d)))
}

// dirOf is the Direction of a direction index.
func dirOf(i int) Direction { return Direction(1 << i) }

// kind is what a fault does.
type kind uint8

const (
	kindLatency kind = iota + 1
	kindBandwidth
	kindSlicer
	kindLimitData
	kindBlackhole
	kindResetAfter
	kindResetAfterBytes
	kindSlowClose
	kindHook
)

func (k kind) String() string {
	switch k {
	case kindLatency:
		return "Latency"
	case kindBandwidth:
		return "Bandwidth"
	case kindSlicer:
		return "Slicer"
	case kindLimitData:
		return "LimitData"
	case kindBlackhole:
		return "Blackhole"
	case kindResetAfter:
		return "ResetAfter"
	case kindResetAfterBytes:
		return "ResetAfterBytes"
	case kindSlowClose:
		return "SlowClose"
	case kindHook:
		return "Hook"
	}
	return "kind(?)"
}

// spec is a fault's immutable description. Its address is its identity:
// per-session draws and per-session buckets are keyed by it.
type spec struct {
	kind   kind
	d, d2  time.Duration // Latency: delay, jitter; Slicer: -, delay; others: their duration
	n, n2  int64         // Bandwidth: rate; Slicer: size, variation; LimitData, ResetAfterBytes: bytes
	shared *bucket       // SharedBandwidth: the one bucket; nil for per-session Bandwidth
	hook   HookFunc

	p          float64 // probability in [0, 1]
	perSession bool
}

// Fault is one fault, built by Latency, Bandwidth, SharedBandwidth,
// Slicer, LimitData, Blackhole, ResetAfter, ResetAfterBytes, SlowClose or
// Hook, and put in effect with Forwarder.Set. A Fault is an immutable
// value, safe to share between goroutines and to set on several
// forwarders. The zero Fault does nothing.
//
// Without WithProbability a fault always applies. With it, the fault is
// drawn each time it could act: for each chunk (a read from the client,
// a write toward it), and, for SlowClose, at the close. After PerSession
// it is drawn once per session and direction instead, and then applies to
// all of that session's chunks in that direction or to none. A Blackhole
// drawn per chunk, once it hits, holds its direction for good (until the
// fault is removed): a stream cannot pass a chunk it holds.
type Fault struct {
	s *spec
}

// WithProbability returns a copy of f that applies with probability p
// (0 never, 1 always). It panics if p is not in [0, 1].
func (f Fault) WithProbability(p float64) Fault {
	if !(p >= 0 && p <= 1) {
		panic(fmt.Sprintf("listenertest: WithProbability: %v is not in [0, 1]", p))
	}
	return f.with(func(s *spec) { s.p = p })
}

// PerSession returns a copy of f whose probability is drawn once per
// session and direction instead of per chunk.
func (f Fault) PerSession() Fault {
	return f.with(func(s *spec) { s.perSession = true })
}

func (f Fault) with(change func(*spec)) Fault {
	if f.s == nil {
		return f
	}
	c := *f.s
	change(&c)
	return Fault{&c}
}

// String describes f, for logs and failure messages.
func (f Fault) String() string {
	s := f.s
	if s == nil {
		return "none"
	}
	var b string
	switch s.kind {
	case kindLatency:
		b = fmt.Sprintf("Latency(%v, %v)", s.d, s.d2)
	case kindBandwidth:
		if s.shared != nil {
			b = fmt.Sprintf("SharedBandwidth(%d)", s.n)
		} else {
			b = fmt.Sprintf("Bandwidth(%d)", s.n)
		}
	case kindSlicer:
		b = fmt.Sprintf("Slicer(%d, %d, %v)", s.n, s.n2, s.d2)
	case kindLimitData, kindResetAfterBytes:
		b = fmt.Sprintf("%s(%d)", s.kind, s.n)
	case kindBlackhole, kindResetAfter, kindSlowClose:
		b = fmt.Sprintf("%s(%v)", s.kind, s.d)
	case kindHook:
		b = "Hook(func)"
	}
	if s.p < 1 {
		b += fmt.Sprintf(".WithProbability(%v)", s.p)
	}
	if s.perSession {
		b += ".PerSession()"
	}
	return b
}

func newFault(s spec) Fault {
	s.p = 1
	return Fault{&s}
}

func nonNegative(who string, d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("listenertest: %s: negative duration %v", who, d))
	}
}

// Latency holds each chunk for delay plus a uniform random offset in
// [-jitter, +jitter] (never less than zero) before passing it on. Chunks
// keep their order: one chunk is held at a time, so a direction that
// streams many chunks slows down by delay per chunk. It panics on a
// negative argument.
func Latency(delay, jitter time.Duration) Fault {
	nonNegative("Latency", delay)
	nonNegative("Latency", jitter)
	return newFault(spec{kind: kindLatency, d: delay, d2: jitter})
}

// Bandwidth limits each session to bytesPerSecond in the direction it is
// set on, with a token bucket whose burst is one piece (1/50 s worth of
// bytes, at least 1 and at most 16 KiB): at most one piece is read ahead,
// so the sender is slowed down by TCP backpressure, never buffered. It
// panics unless bytesPerSecond > 0.
func Bandwidth(bytesPerSecond int64) Fault {
	if bytesPerSecond <= 0 {
		panic(fmt.Sprintf("listenertest: Bandwidth: %d bytes/s is not positive", bytesPerSecond))
	}
	return newFault(spec{kind: kindBandwidth, n: bytesPerSecond})
}

// SharedBandwidth is Bandwidth with one bucket shared by every session
// and direction that the returned Fault (or a copy of it) is set on: the
// total rate through them stays under bytesPerSecond. Set the same value
// on Both to model a half-duplex link; call SharedBandwidth once per
// direction for a full-duplex one.
func SharedBandwidth(bytesPerSecond int64) Fault {
	if bytesPerSecond <= 0 {
		panic(fmt.Sprintf("listenertest: SharedBandwidth: %d bytes/s is not positive", bytesPerSecond))
	}
	return newFault(spec{kind: kindBandwidth, n: bytesPerSecond, shared: newBucket(bytesPerSecond)})
}

// Slicer cuts the stream into slices of averageSize bytes, give or take
// a uniform random sizeVariation, with delay between consecutive slices;
// each slice is a separate write. It panics unless averageSize > 0 and
// 0 <= sizeVariation < averageSize.
func Slicer(averageSize, sizeVariation int, delay time.Duration) Fault {
	if averageSize <= 0 || sizeVariation < 0 || sizeVariation >= averageSize {
		panic(fmt.Sprintf("listenertest: Slicer: want averageSize > 0 and 0 <= sizeVariation < averageSize, got %d, %d", averageSize, sizeVariation))
	}
	nonNegative("Slicer", delay)
	return newFault(spec{kind: kindSlicer, n: int64(averageSize), n2: int64(sizeVariation), d2: delay})
}

// LimitData passes n bytes in its direction, then cuts the session (see
// Session.Cut). With n == 0, a session is cut at its first chunk in that
// direction. It panics on a negative n.
func LimitData(n int64) Fault {
	if n < 0 {
		panic(fmt.Sprintf("listenertest: LimitData: negative byte count %d", n))
	}
	return newFault(spec{kind: kindLimitData, n: n})
}

// Blackhole stops its direction: nothing more is passed on, and the
// connection stays open. Nothing is read from the sender either, so its
// writes block once the kernel buffers are full (the bytes are held, not
// dropped, and flow again when the fault is removed). If closeAfter > 0,
// a session that has been held that long is cut; zero means never. It
// panics on a negative closeAfter.
//
// A session's hold begins when it next tries to pass a chunk in that
// direction (for Upstream in a new session: at once), so closeAfter
// counts from there.
func Blackhole(closeAfter time.Duration) Fault {
	nonNegative("Blackhole", closeAfter)
	return newFault(spec{kind: kindBlackhole, d: closeAfter})
}

// ResetAfter resets the session (see Session.Reset) after d, counted from
// the first chunk that it applies to in its direction; that chunk is
// passed on. With d == 0 the chunk itself is dropped and the session reset
// at once. It panics on a negative d.
func ResetAfter(d time.Duration) Fault {
	nonNegative("ResetAfter", d)
	return newFault(spec{kind: kindResetAfter, d: d})
}

// ResetAfterBytes passes n bytes in its direction, then resets the
// session (see Session.Reset). It panics on a negative n.
func ResetAfterBytes(n int64) Fault {
	if n < 0 {
		panic(fmt.Sprintf("listenertest: ResetAfterBytes: negative byte count %d", n))
	}
	return newFault(spec{kind: kindResetAfterBytes, n: n})
}

// SlowClose delays the end of the stream in its direction by d: on
// Upstream, the client's FIN (or close) reaches the upstream d late; on
// Downstream, the FIN and the close toward the client happen d late. It
// panics on a negative d.
func SlowClose(d time.Duration) Fault {
	nonNegative("SlowClose", d)
	return newFault(spec{kind: kindSlowClose, d: d})
}

// HookFunc decides what happens to one chunk. It runs on the goroutine
// copying that direction, before the other faults of the chunk, with the
// chunk as read from the client (Upstream) or as about to be written to
// it (Downstream). The chunk is only valid during the call and must not
// be changed. A HookFunc may call Forwarder and Session methods (Set,
// Pause, Cut, ...) but not Forwarder.Close, and it must return: the
// forwarder cannot interrupt it.
type HookFunc func(s *Session, dir Direction, chunk []byte) Action

// Hook calls fn for each chunk in the directions it is set on, for tests
// that need exact control rather than timers. It panics on a nil fn.
func Hook(fn HookFunc) Fault {
	if fn == nil {
		panic("listenertest: Hook: nil func")
	}
	return newFault(spec{kind: kindHook, hook: fn})
}

// Action is what a HookFunc decides for a chunk: Pass, Delay, Drop or
// Reset. The zero Action is Pass.
type Action struct {
	kind  actionKind
	delay time.Duration
}

type actionKind uint8

const (
	actPass actionKind = iota
	actDelay
	actDrop
	actReset
)

// Pass passes the chunk on (through the other faults).
func Pass() Action { return Action{} }

// Delay holds the chunk for d, then passes it on.
func Delay(d time.Duration) Action {
	nonNegative("Delay", d)
	return Action{kind: actDelay, delay: d}
}

// Drop drops the chunk and cuts the session (see Session.Cut).
func Drop() Action { return Action{kind: actDrop} }

// Reset drops the chunk and resets the session (see Session.Reset).
func Reset() Action { return Action{kind: actReset} }

// String names the action ("Pass", "Drop", "Reset", or "Delay(d)"), as
// failure messages show it.
func (a Action) String() string {
	switch a.kind {
	case actDelay:
		return fmt.Sprintf("Delay(%v)", a.delay)
	case actDrop:
		return "Drop"
	case actReset:
		return "Reset"
	}
	return "Pass"
}

// faultSet is the faults in effect in one direction. It is immutable;
// changed is closed when it is replaced, which wakes every wait that
// depends on it.
type faultSet struct {
	specs   []*spec
	changed chan struct{}
}

func newFaultSet(faults []Fault) *faultSet {
	fs := &faultSet{changed: make(chan struct{})}
	for _, f := range faults {
		if f.s != nil {
			fs.specs = append(fs.specs, f.s)
		}
	}
	return fs
}
