package realserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Reply is one RESP2 or RESP3 value as a Redis client reads it.
type Reply struct {
	// Type is the RESP type byte: '+' simple string, '-' error, ':'
	// integer, '$' bulk string, '*' array, '%' map, '~' set, '>' push,
	// '_' null, '#' boolean, ',' double, '(' big number, '=' verbatim
	// string, '!' bulk error.
	Type byte
	// Str is the text of a string, error, number or boolean.
	Str string
	// Elems holds an aggregate's elements (a map's keys and values in
	// turn).
	Elems []Reply
	// Null is set for a null bulk string or array, and for '_'.
	Null bool
}

// String formats r compactly for test messages: strings as they are,
// errors with their '-', aggregates in brackets with their type.
func (r Reply) String() string {
	switch {
	case r.Null:
		return "(nil)"
	case r.Elems != nil || r.Type == '*' || r.Type == '%' || r.Type == '~' || r.Type == '>':
		parts := make([]string, len(r.Elems))
		for i, e := range r.Elems {
			parts[i] = e.String()
		}
		return string(r.Type) + "[" + strings.Join(parts, " ") + "]"
	case r.Type == '-' || r.Type == '!':
		return "-" + r.Str
	}
	return r.Str
}

// Err returns the reply as an error when it is one, else nil.
func (r Reply) Err() error {
	if r.Type == '-' || r.Type == '!' {
		return errors.New(r.Str)
	}
	return nil
}

// Conn is a minimal Redis client over one connection, for tests: it
// sends commands as RESP arrays and reads replies of any RESP version.
type Conn struct {
	net.Conn
	r *bufio.Reader
}

// DialRedis connects to addr (a server or a proxy in front of one).
func DialRedis(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// NewConn wraps c.
func NewConn(c net.Conn) *Conn { return &Conn{Conn: c, r: bufio.NewReader(c)} }

// Send writes one command without reading its reply.
func (c *Conn) Send(args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(c.Conn, b.String())
	return err
}

// Do sends one command and reads one reply, within timeout.
func (c *Conn) Do(timeout time.Duration, args ...string) (Reply, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if err := c.Send(args...); err != nil {
		return Reply{}, err
	}
	return c.ReadReply()
}

// ReadReply reads one reply (honouring the conn's deadline).
func (c *Conn) ReadReply() (Reply, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return Reply{}, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return Reply{}, fmt.Errorf("resp: bad line %q", line)
	}
	typ, body := line[0], line[1:len(line)-2]
	r := Reply{Type: typ}
	switch typ {
	case '+', '-', ':', ',', '(', '#':
		r.Str = body
	case '_':
		r.Null = true
	case '$', '!', '=':
		n, err := strconv.Atoi(body)
		if err != nil {
			return r, fmt.Errorf("resp: bad length %q", line)
		}
		if n < 0 {
			r.Null = true
			return r, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return r, err
		}
		r.Str = string(buf[:n])
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil {
			return r, fmt.Errorf("resp: bad count %q", line)
		}
		if n < 0 {
			r.Null = true
			return r, nil
		}
		if typ == '%' || typ == '|' {
			n *= 2
		}
		r.Elems = make([]Reply, 0, n)
		for range n {
			e, err := c.ReadReply()
			if err != nil {
				return r, err
			}
			r.Elems = append(r.Elems, e)
		}
		if typ == '|' { // an attribute precedes the real reply
			return c.ReadReply()
		}
	default:
		return r, fmt.Errorf("resp: unknown type in %q", line)
	}
	return r, nil
}
