package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Route sends the TLS clients that ask for one of Names (the server name
// of their ClientHello, SNI) to Upstream. TLS is not terminated: the
// ClientHello is peeked, then replayed to the upstream, and the copy
// carries the rest.
type Route struct {
	// Names are exact server names ("api.example.com") or wildcards
	// ("*.example.com", which matches exactly one label in place of the
	// star, as a certificate's wildcard does: "a.example.com", not
	// "example.com" or "a.b.example.com"). They are compared without
	// regard to case; an exact name wins over a wildcard.
	Names []string
	// Upstream is where the matching clients go: a pool, or a
	// balance.Set with its own servers, health and pools.
	Upstream Upstream
}

// DefaultPeekTimeout bounds the peek at a client's ClientHello.
const DefaultPeekTimeout = 5 * time.Second

// maxPeek bounds the bytes peeked for a ClientHello: more than a
// ClientHello takes in practice (a hybrid post-quantum key share makes
// one about 1.8 KiB), and at least 16 KiB, a full TLS record.
const maxPeek = 64 << 10

// routes is a validated route table.
type routes struct {
	exact map[string]*target // by lower-case name
	wild  map[string]*target // by lower-case suffix after "*."
}

func newRoutes(list []Route, targetOf func(Upstream) (*target, error)) (*routes, error) {
	if len(list) == 0 {
		return nil, nil
	}
	rt := &routes{exact: map[string]*target{}, wild: map[string]*target{}}
	for i, r := range list {
		if r.Upstream == nil || isNilPool(r.Upstream) {
			return nil, fmt.Errorf("listener: Config.Routes[%d].Upstream: nil", i)
		}
		if len(r.Names) == 0 {
			return nil, fmt.Errorf("listener: Config.Routes[%d].Names: empty", i)
		}
		t, err := targetOf(r.Upstream)
		if err != nil {
			return nil, fmt.Errorf("listener: Config.Routes[%d]: %w", i, err)
		}
		for _, n := range r.Names {
			name, err := RouteName(n)
			if err != nil {
				return nil, fmt.Errorf("listener: Config.Routes[%d].Names: %w", i, err)
			}
			m := rt.exact
			if suffix, ok := strings.CutPrefix(name, "*."); ok {
				m, name = rt.wild, suffix
			}
			if _, dup := m[name]; dup {
				return nil, fmt.Errorf("listener: Config.Routes[%d].Names: %q is routed twice", i, n)
			}
			m[name] = t
		}
	}
	return rt, nil
}

// RouteName checks a Route name and returns it as routes compare it: in
// lower case, without a trailing dot. A name is a host name of
// dot-separated labels of letters, digits, '-' and '_', or such a name
// behind "*." (a wildcard for exactly one label).
func RouteName(name string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	if !validName(strings.TrimPrefix(n, "*.")) {
		return "", fmt.Errorf("%q is not a host name or a *.suffix wildcard", name)
	}
	return n, nil
}

// validName reports whether s is a host name of dot-separated labels of
// letters, digits, '-' and '_'.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// lookup returns the route for a server name, or nil.
func (rt *routes) lookup(name string) *target {
	if name == "" {
		return nil
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if up, ok := rt.exact[name]; ok {
		return up
	}
	if _, suffix, ok := strings.Cut(name, "."); ok {
		return rt.wild[suffix]
	}
	return nil
}

// peekBufs recycles the buffers that hold peeked ClientHellos.
var peekBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// errNotHello ends the ClientHello parse: crypto/tls has read the whole
// message and handed it to GetConfigForClient.
var errNotHello = errors.New("peek done")

// peekServerName reads the client's first bytes into *buf, until a whole
// ClientHello has been read or the bytes are not TLS, and returns the
// server name it asks for ("" when none, or not TLS). The bytes read stay
// in *buf, to be replayed to the upstream. The read is bounded by
// maxPeek bytes; the caller bounds it in time with a read deadline.
//
// crypto/tls parses the ClientHello (records split anywhere, several
// records per message): a tls.Server reads from the recorded bytes and is
// stopped by GetConfigForClient as soon as it has the hello.
func peekServerName(c net.Conn, buf *[]byte) (string, error) {
	rec := &recorder{Conn: c, r: c, buf: buf}
	// The first byte says whether this is TLS at all: a handshake record.
	var first [1]byte
	if _, err := io.ReadFull(rec, first[:]); err != nil {
		return "", err
	}
	if first[0] != 0x16 {
		return "", nil
	}
	rec.replayFirst = true
	var name string
	srv := tls.Server(rec, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			name = h.ServerName
			return nil, errNotHello
		},
	})
	err := srv.Handshake()
	if name != "" || errors.Is(err, errNotHello) {
		return name, nil
	}
	if rec.err != nil {
		return "", rec.err // the client's own read error, or the timeout
	}
	return "", nil // TLS-looking, but not a ClientHello crypto/tls takes
}

// recorder is the net.Conn a peeking tls.Server reads from: it reads the
// client and keeps every byte; it writes nothing (crypto/tls writes an
// alert after a failed hello, which must not reach the client).
type recorder struct {
	net.Conn    // the client, for its addresses; never read or written through
	r           io.Reader
	buf         *[]byte
	replayFirst bool  // the next Read returns the first byte again
	err         error // the client's read error
}

func (r *recorder) Read(p []byte) (int, error) {
	if r.replayFirst && len(*r.buf) > 0 {
		r.replayFirst = false
		p[0] = (*r.buf)[0]
		return 1, nil
	}
	room := maxPeek - len(*r.buf)
	if room <= 0 {
		r.err = fmt.Errorf("listener: ClientHello larger than %d bytes", maxPeek)
		return 0, r.err
	}
	n, err := r.r.Read(p[:min(len(p), room)])
	*r.buf = append(*r.buf, p[:n]...)
	if err != nil {
		r.err = err
	}
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }

func (r *recorder) Close() error { return nil }

func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }
