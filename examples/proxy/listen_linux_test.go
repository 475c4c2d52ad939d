package main

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// keepaliveOpts are a socket's keepalive options as the kernel reports
// them.
type keepaliveOpts struct {
	on, idle, intvl, cnt int
}

// getKeepalive reads c's keepalive options.
func getKeepalive(t *testing.T, c syscall.Conn) keepaliveOpts {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var o keepaliveOpts
	var errs [4]error
	if err := raw.Control(func(fd uintptr) {
		o.on, errs[0] = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		o.idle, errs[1] = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		o.intvl, errs[2] = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		o.cnt, errs[3] = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	}); err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("getsockopt: %v", err)
		}
	}
	return o
}

// acceptOne dials ln over loopback and returns the conn ln accepted. Dial
// returns once the kernel has queued the conn, so Accept does not wait.
// Both ends are closed at the end of the test.
func acceptOne(t *testing.T, ln net.Listener) *net.TCPConn {
	t.Helper()
	d, err := net.DialTimeout("tcp", ln.Addr().String(), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestListenKeepaliveInherited listens through listen, accepts a real
// loopback conn and reads its keepalive options back: what listen set on
// the listening socket, inherited, with the idle time and interval in
// whole seconds rounded up; with 0, keepalive off.
func TestListenKeepaliveInherited(t *testing.T) {
	tests := []struct {
		keepalive time.Duration
		want      keepaliveOpts
	}{
		{7 * time.Second, keepaliveOpts{on: 1, idle: 7, intvl: 7, cnt: clientKeepaliveCount}},
		{15 * time.Second, keepaliveOpts{on: 1, idle: 15, intvl: 15, cnt: clientKeepaliveCount}},
		{1500 * time.Millisecond, keepaliveOpts{on: 1, idle: 2, intvl: 2, cnt: clientKeepaliveCount}},
		{maxClientKeepalive, keepaliveOpts{on: 1, idle: 32767, intvl: 32767, cnt: clientKeepaliveCount}},
	}
	for _, tt := range tests {
		t.Run(tt.keepalive.String(), func(t *testing.T) {
			ln, err := listen(t.Context(), "tcp", "127.0.0.1:0", tt.keepalive)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if got := getKeepalive(t, ln.(*net.TCPListener)); got != tt.want {
				t.Errorf("listening socket: got %+v; want %+v", got, tt.want)
			}
			if got := getKeepalive(t, acceptOne(t, ln)); got != tt.want {
				t.Errorf("accepted conn: got %+v; want %+v", got, tt.want)
			}
		})
	}

	t.Run("0", func(t *testing.T) {
		ln, err := listen(t.Context(), "tcp", "127.0.0.1:0", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if got := getKeepalive(t, acceptOne(t, ln)).on; got != 0 {
			t.Errorf("accepted conn with keepalive 0: SO_KEEPALIVE %d; want 0", got)
		}
	})
}

// TestListenKeepaliveNotSetPerConn checks that the accept path sets no
// keepalive option of its own: after listen, the listening socket's
// options are changed behind its back, and the accepted conn must have
// the changed ones. Had package net set keepalive on the accepted conn,
// as it does by default, SO_KEEPALIVE would be 1 and TCP_KEEPIDLE its
// own value.
func TestListenKeepaliveNotSetPerConn(t *testing.T) {
	ln, err := listen(t.Context(), "tcp", "127.0.0.1:0", 7*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errs [2]error
	if err := raw.Control(func(fd uintptr) {
		errs[0] = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
		errs[1] = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 11)
	}); err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("setsockopt: %v", err)
		}
	}
	got := getKeepalive(t, acceptOne(t, ln))
	if want := (keepaliveOpts{on: 0, idle: 11, intvl: 7, cnt: clientKeepaliveCount}); got != want {
		t.Errorf("accepted conn: got %+v; want %+v, the listening socket's at accept time", got, want)
	}
}
