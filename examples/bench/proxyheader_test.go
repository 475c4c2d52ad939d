package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// v2Header returns a v2 header for 192.0.2.1:1234 -> 198.51.100.2:80
// with extra bytes of TLVs after the addresses.
func v2Header(extra int) []byte {
	b := append([]byte{}, proxyV2Sig[:]...)
	b = append(b, 0x21, 0x11)
	b = binary.BigEndian.AppendUint16(b, uint16(12+extra))
	b = append(b, 192, 0, 2, 1, 198, 51, 100, 2, 0x04, 0xd2, 0, 80)
	return append(b, bytes.Repeat([]byte{0xEE}, extra)...)
}

const v1Header = "PROXY TCP4 192.0.2.1 198.51.100.2 1234 80\r\n"

func TestProxyHeaderLen(t *testing.T) {
	v2 := string(v2Header(0))
	for _, tt := range []struct {
		name string
		in   string
		n    int
		more bool
	}{
		{"empty", "", 0, true},
		{"request", "w00001 s000000000001|abc", 0, false},
		{"fence", "PING\r\n", 0, false},
		{"P alone", "P", 0, true},
		{"v1 prefix", "PROXY TCP4 192.0", 0, true},
		{"v1", v1Header, len(v1Header), false},
		{"v1 and data", v1Header + "hello", len(v1Header), false},
		{"v1 unknown", "PROXY UNKNOWN\r\nx", len("PROXY UNKNOWN\r\n"), false},
		{"PROXY without space", "PROXYX\r\n", 0, false},
		{"v1 without CRLF in 107 bytes", "PROXY " + strings.Repeat("1", 101), 0, false},
		{"v1 106 bytes, no CRLF yet", "PROXY " + strings.Repeat("1", 100), 0, true},
		{"CR alone", "\r", 0, true},
		{"CRLF then data", "\r\nhello", 0, false},
		{"v2 signature only", v2[:12], 0, true},
		{"v2 fixed part", v2[:16], len(v2), true},
		{"v2", v2, len(v2), false},
		{"v2 and data", v2 + "hello", len(v2), false},
		{"v2 of version 1", v2[:12] + "\x11\x11\x00\x0c" + v2[16:], 0, false},
		{"v2 with TLVs, partial", string(v2Header(300))[:100], 16 + 12 + 300, true},
	} {
		n, more := proxyHeaderLen([]byte(tt.in))
		if n != tt.n || more != tt.more {
			t.Errorf("%s: proxyHeaderLen(%q): got %d, %v; want %d, %v", tt.name, tt.in, n, more, tt.n, tt.more)
		}
	}
}

// TestReadSkippingProxyHeader writes each case over a net.Pipe, whose
// reads return at most one write, in pieces of every size from 1 byte
// up, so that a header arrives split at every boundary.
func TestReadSkippingProxyHeader(t *testing.T) {
	for _, tt := range []struct {
		name       string
		in, want   string
		bufLen     int
		wantHeader int64
	}{
		{"no header", "w00001 hello", "w00001 hello", 256, 0},
		{"fence", "PING\r\n", "PING\r\n", 256, 0},
		{"v1", v1Header + "hello", "hello", 256, 1},
		{"v1 alone", v1Header, "", 256, 1},
		{"v2", string(v2Header(0)) + "hello", "hello", 256, 1},
		{"v2 with TLVs", string(v2Header(40)) + "hello", "hello", 256, 1},
		{"v2 longer than buf", string(v2Header(1000)) + "hello", "hello", 256, 1},
		{"like v1, not one", "PROXY " + strings.Repeat("1", 120) + "\r\n", "PROXY " + strings.Repeat("1", 120) + "\r\n", 256, 0},
		{"like v2, not one", string(proxyV2Sig[:5]) + "hello", string(proxyV2Sig[:5]) + "hello", 256, 0},
	} {
		for piece := 1; piece <= len(tt.in); piece++ {
			if piece > 20 && piece != len(tt.in) {
				continue
			}
			got, headers := readAllSkipping(t, []byte(tt.in), piece, tt.bufLen)
			if got != tt.want || headers != tt.wantHeader {
				t.Errorf("%s in pieces of %d: got %q and %d header(s); want %q and %d", tt.name, piece, got, headers, tt.want, tt.wantHeader)
			}
		}
	}
}

// readAllSkipping writes in over a pipe in pieces of the given size, then
// closes it, and returns what readSkippingProxyHeader and the reads after
// it got, with the header count.
func readAllSkipping(t *testing.T, in []byte, piece, bufLen int) (string, int64) {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	b.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		defer a.Close()
		for len(in) > 0 {
			k := min(piece, len(in))
			if _, err := a.Write(in[:k]); err != nil {
				return
			}
			in = in[k:]
		}
	}()
	var ctr counters
	buf := make([]byte, bufLen)
	n, err := readSkippingProxyHeader(b, buf, &ctr)
	out := append([]byte{}, buf[:n]...)
	if err == nil {
		rest, err := io.ReadAll(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rest...)
	} else if err != io.EOF {
		t.Fatal(err)
	}
	return string(out), ctr.proxyHeaders.Load()
}

// TestUpstreamsDropProxyHeader sends headers to the echo and sink servers
// over TCP, split into separate segments, and checks that only the data
// after them is echoed or counted.
func TestUpstreamsDropProxyHeader(t *testing.T) {
	u := startTestUpstreams(t)
	echo := func(parts ...string) string {
		t.Helper()
		c, err := net.Dial("tcp", u.Addr(kindEcho))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		for _, p := range parts {
			if _, err := io.WriteString(c, p); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // one segment each (Go sets TCP_NODELAY)
		}
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	v2 := string(v2Header(0))
	for _, tt := range []struct {
		parts []string
		want  string
	}{
		{[]string{v1Header[:3], v1Header[3:20], v1Header[20:], "hello"}, "hello"},
		{[]string{v1Header + "hel", "lo"}, "hello"},
		{[]string{v2[:1], v2[1:14], v2[14:], "hello"}, "hello"},
		{[]string{v2 + "PING\r\n"}, "+PONG\r\n"},
		{[]string{"PING\r\n"}, "+PONG\r\n"},
		{[]string{"hello", v1Header}, "hello" + v1Header}, // only at the start
	} {
		if got := echo(tt.parts...); got != tt.want {
			t.Errorf("echo of %q: got %q; want %q", tt.parts, got, tt.want)
		}
	}
	if st := u.Stats().Servers[kindEcho]; st.ProxyHeaders != 4 || st.Errors != 0 {
		t.Errorf("echo proxy headers, errors: got %d, %d; want 4, 0", st.ProxyHeaders, st.Errors)
	}

	c, err := net.Dial("tcp", u.Addr(kindSink))
	if err != nil {
		t.Fatal(err)
	}
	// Two writes, likely two segments: the header split inside.
	if _, err := c.Write(v2Header(8)[:7]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := c.Write(append(v2Header(8)[7:], "0123456789"...)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Until the sink has counted what it will count: the header and the
	// data, or a wrong figure that stays (its conn closed).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st := u.Stats().Servers[kindSink]
		if st.BytesIn == 10 && st.ProxyHeaders == 1 || st.Accepts > 0 && st.Open == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := u.Stats().Servers[kindSink]; st.BytesIn != 10 || st.ProxyHeaders != 1 {
		t.Errorf("sink bytes in, proxy headers: got %d, %d; want 10, 1", st.BytesIn, st.ProxyHeaders)
	}
}

// TestLoadProxyHeader runs churn and rr with -proxy-header straight at
// the echo server: every session's header is dropped, no reply is off.
func TestLoadProxyHeader(t *testing.T) {
	u := startTestUpstreams(t)
	for _, v := range []string{"v1", "v2"} {
		for _, mode := range []string{"churn", "rr"} {
			before := u.Stats().Servers[kindEcho]
			r, err := Load(context.Background(), short(loadConfig{Mode: mode, Control: u.ControlAddr(), Conns: 4, ProxyHeader: v}))
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 {
				t.Errorf("%s %s: %d errors: %v", v, mode, r.Errors, r.ErrorSamples)
			}
			after := u.Stats().Servers[kindEcho]
			if h, a := after.ProxyHeaders-before.ProxyHeaders, after.Accepts-before.Accepts; h != a || a == 0 {
				t.Errorf("%s %s: %d headers dropped for %d accepts; want as many, more than 0", v, mode, h, a)
			}
		}
	}
	if _, err := Load(context.Background(), loadConfig{Mode: "churn", Control: u.ControlAddr(), ProxyHeader: "v3"}); err == nil {
		t.Error("-proxy-header v3: got nil error")
	}
}
