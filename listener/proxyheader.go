package listener

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
)

// ProxyHeader is the version of the PROXY protocol header that a
// ProxyListener writes to each upstream connection before any client
// byte (Config.SendProxy), so that the server sees the client's address.
type ProxyHeader uint8

const (
	// ProxyNone writes no header (the zero value).
	ProxyNone ProxyHeader = iota
	// ProxyV1 writes the text header ("PROXY TCP4 ...\r\n").
	ProxyV1
	// ProxyV2 writes the binary header.
	ProxyV2
)

// String returns "none", "v1" or "v2".
func (v ProxyHeader) String() string {
	switch v {
	case ProxyNone:
		return "none"
	case ProxyV1:
		return "v1"
	case ProxyV2:
		return "v2"
	}
	return "ProxyHeader(" + strconv.Itoa(int(v)) + ")"
}

// proxyV2Sig is the PROXY protocol v2 signature.
var proxyV2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// appendProxyHeader appends the header of version v for a client at src
// that connected to dst. Addresses that are not both IPv4 or both IPv6
// (a unix socket, say) give v1's "UNKNOWN" and v2's LOCAL command, which
// tell the server to use the connection's own addresses.
func appendProxyHeader(b []byte, v ProxyHeader, src, dst net.Addr) []byte {
	s, d := addrPort(src), addrPort(dst)
	v4 := s.Addr().Is4() && d.Addr().Is4()
	v6 := s.Addr().Is6() && d.Addr().Is6()
	if v == ProxyV1 {
		switch {
		case v4:
			b = append(b, "PROXY TCP4 "...)
		case v6:
			b = append(b, "PROXY TCP6 "...)
		default:
			return append(b, "PROXY UNKNOWN\r\n"...)
		}
		b = s.Addr().AppendTo(b)
		b = append(b, ' ')
		b = d.Addr().AppendTo(b)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(s.Port()), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(d.Port()), 10)
		return append(b, "\r\n"...)
	}
	b = append(b, proxyV2Sig[:]...)
	switch {
	case v4:
		b = append(b, 0x21, 0x11, 0, 12) // PROXY, TCP over IPv4, 12 bytes
		b = append(b, s.Addr().AsSlice()...)
		b = append(b, d.Addr().AsSlice()...)
	case v6:
		b = append(b, 0x21, 0x21, 0, 36) // PROXY, TCP over IPv6, 36 bytes
		s16, d16 := s.Addr().As16(), d.Addr().As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	default:
		return append(b, 0x20, 0x00, 0, 0) // LOCAL, no address
	}
	b = binary.BigEndian.AppendUint16(b, s.Port())
	return binary.BigEndian.AppendUint16(b, d.Port())
}

// addrPort returns a TCP address's IP (unmapped) and port, or the zero
// AddrPort.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}
		}
	}
	// A zone (fe80::1%eth0) has no place in a PROXY header.
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
