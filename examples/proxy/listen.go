package main

import "time"

// clientKeepaliveCount is how many keepalive probes a client may leave
// unanswered before its conn is dropped: Go's default (see
// net.KeepAliveConfig).
const clientKeepaliveCount = 9

// maxClientKeepalive bounds -client-keepalive: Linux takes at most 32767
// seconds for TCP_KEEPIDLE and TCP_KEEPINTVL, and a larger value would
// fail only at listen time. The bound is the same on every platform, so
// that a config file valid on one is valid on all.
const maxClientKeepalive = 32767 * time.Second
