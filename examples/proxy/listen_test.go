package main

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestListenAccepts checks, on every platform, that a listener from
// listen accepts and carries bytes with keepalive on and off.
func TestListenAccepts(t *testing.T) {
	for _, keepalive := range []time.Duration{0, 1500 * time.Millisecond, 15 * time.Second} {
		t.Run(keepalive.String(), func(t *testing.T) {
			ln, err := listen(t.Context(), "tcp", "127.0.0.1:0", keepalive)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			d, err := net.DialTimeout("tcp", ln.Addr().String(), waitFor)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitFor))
			if _, err := d.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
				t.Errorf("accepted conn read: got %q, %v; want \"hi\"", buf, err)
			}
		})
	}
}
