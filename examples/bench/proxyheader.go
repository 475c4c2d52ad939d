package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// PROXY protocol headers, as a proxy with -send-proxy writes them before
// a client's first byte, and as the load clients write them with
// -proxy-header (for a proxy with -accept-proxy).
const (
	proxyV1Prefix = "PROXY "
	// proxyV1Max is the longest v1 header the spec allows, CRLF included.
	proxyV1Max = 107
	// proxyV2Fixed is the v2 header's fixed part: the signature, the
	// version and command, the family and the length of what follows.
	proxyV2Fixed = 16
)

// proxyV2Sig is the v2 header's 12-byte signature.
var proxyV2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// proxyHeaderLen inspects b, the first bytes of a conn. It returns
// (0, false) when b does not start with a PROXY header, (n, false) when
// b starts with a whole header of n bytes, and (n, true) when b may be
// the start of one and more bytes must come to decide: then n is the
// header's whole length if already known (v2, once its fixed part is
// in), else 0. A v1 header is "PROXY " up to the first CRLF, within 107
// bytes (a line without one is not a header); a v2 header is the
// signature, a version nibble of 2, and the length its fixed part gives.
func proxyHeaderLen(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, true
	}
	switch b[0] {
	case proxyV1Prefix[0]:
		k := min(len(b), len(proxyV1Prefix))
		if string(b[:k]) != proxyV1Prefix[:k] {
			return 0, false
		}
		if i := bytes.Index(b[:min(len(b), proxyV1Max)], []byte("\r\n")); i >= 0 {
			return i + 2, false
		}
		return 0, len(b) < proxyV1Max
	case proxyV2Sig[0]:
		k := min(len(b), len(proxyV2Sig))
		if !bytes.Equal(b[:k], proxyV2Sig[:k]) {
			return 0, false
		}
		if len(b) < proxyV2Fixed {
			return 0, true
		}
		if b[12]>>4 != 2 {
			return 0, false
		}
		n := proxyV2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
		return n, len(b) < n
	}
	return 0, false
}

// readSkippingProxyHeader is a conn's first Read into buf (at least
// proxyV1Max+1 bytes long), except that a PROXY header at the start of
// the conn is read whole, across as many segments as it came in, and
// dropped (and counted in ctr.proxyHeaders): the data after it is
// returned in buf[:n]. Bytes that only began like a header are returned
// as they are. The common case costs one comparison: a first byte that
// is neither 'P' nor '\r'.
func readSkippingProxyHeader(c net.Conn, buf []byte, ctr *counters) (int, error) {
	n, err := c.Read(buf)
	if n == 0 || (buf[0] != proxyV1Prefix[0] && buf[0] != proxyV2Sig[0]) {
		return n, err
	}
	for {
		hl, more := proxyHeaderLen(buf[:n])
		if !more {
			if hl > 0 {
				ctr.proxyHeaders.Add(1)
				n = copy(buf, buf[hl:n])
			}
			return n, err
		}
		if err != nil {
			// The conn ended inside what may have been a header: data.
			return n, err
		}
		if hl > len(buf) {
			// A v2 header longer than buf (TLVs, up to 64 KiB): drop
			// what is here and discard the rest as it comes.
			if _, err := io.CopyN(io.Discard, c, int64(hl-n)); err != nil {
				return 0, err
			}
			ctr.proxyHeaders.Add(1)
			return 0, nil
		}
		var m int
		m, err = c.Read(buf[n:])
		n += m
	}
}

// appendProxyHeader appends a PROXY header of version "v1" or "v2" for
// a conn from src to dst (both TCP, both IPv4 or both IPv6).
func appendProxyHeader(b []byte, version string, src, dst net.Addr) ([]byte, error) {
	s, err1 := netip.ParseAddrPort(src.String())
	d, err2 := netip.ParseAddrPort(dst.String())
	if err1 != nil || err2 != nil {
		return b, fmt.Errorf("proxy header: addresses %v and %v are not IP:port", src, dst)
	}
	s = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
	d = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
	if s.Addr().Is4() != d.Addr().Is4() {
		return b, fmt.Errorf("proxy header: addresses %v and %v are of two families", src, dst)
	}
	switch version {
	case "v1":
		fam := "TCP6 "
		if s.Addr().Is4() {
			fam = "TCP4 "
		}
		b = append(b, proxyV1Prefix+fam...)
		b = append(s.Addr().AppendTo(b), ' ')
		b = append(d.Addr().AppendTo(b), ' ')
		b = append(strconv.AppendUint(b, uint64(s.Port()), 10), ' ')
		b = strconv.AppendUint(b, uint64(d.Port()), 10)
		return append(b, "\r\n"...), nil
	case "v2":
		b = append(b, proxyV2Sig[:]...)
		if s.Addr().Is4() {
			b = append(b, 0x21, 0x11, 0, 12) // PROXY, TCP over IPv4, 12 bytes
		} else {
			b = append(b, 0x21, 0x21, 0, 36) // PROXY, TCP over IPv6, 36 bytes
		}
		b = append(b, s.Addr().AsSlice()...)
		b = append(b, d.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, s.Port())
		return binary.BigEndian.AppendUint16(b, d.Port()), nil
	}
	return b, fmt.Errorf("proxy header: version %q: want v1 or v2", version)
}
