package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func runFreePort(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("freeport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	fmt.Fprintln(stdout, port)
	return nil
}

// runWaitListen polls /proc/net/tcp until something listens on the port.
// It never connects, so the proxy under test sees no extra session.
func runWaitListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("waitlisten", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "TCP port to wait for (required)")
	pid := fs.Int("pid", 0, "fail at once if this process exits first (0: do not watch)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *port <= 0 {
		return errors.New("-port: required")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	for {
		ok, err := listening(*port)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if *pid != 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", *pid)); err != nil {
				return fmt.Errorf("process %d exited before listening on port %d", *pid, *port)
			}
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("port %d: not listening after %v", *port, *timeout)
		}
	}
}

// listening reports whether /proc/net/tcp or tcp6 has a listening socket
// on port.
func listening(port int) (bool, error) {
	want := fmt.Sprintf(":%04X", port)
	found := false
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return false, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			if strings.HasSuffix(fields[1], want) {
				found = true
			}
		}
		f.Close()
		if found {
			return true, nil
		}
	}
	return false, nil
}
