package balance

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// pick chooses a healthy server that was not tried yet and reserves a
// session on it (server.reserve). It returns nil when there is none;
// full then reports that some untried healthy server was only at
// MaxSessions, so waiting may help.
func (set *Set) pick(v *view, ip netip.Addr, tried []*server) (sv *server, full bool) {
	switch len(v.up) {
	case 0:
		return nil, false
	case 1: // the common case, without a policy
		sv = v.up[0]
		if slices.Contains(tried, sv) {
			return nil, false
		}
		if !sv.reserve() {
			return nil, true
		}
		return sv, false
	}
	// A reservation can fail only under MaxSessions; each failure marks
	// the server as tried for this pick, so the loop ends.
	var buf [8]*server
	skip := append(buf[:0], tried...)
	for {
		var c *server
		switch v.policy {
		case LeastConn:
			c = set.leastConn(v, skip)
		case Random:
			c = set.twoChoices(v, skip)
		case ClientIP:
			if ip.IsValid() {
				c = rendezvous(v, ip, skip)
				break
			}
			c = set.roundRobin(v, skip)
		default:
			c = set.roundRobin(v, skip)
		}
		if c == nil {
			return nil, full
		}
		if c.reserve() {
			return c, false
		}
		full = true
		skip = append(skip, c)
	}
}

// roundRobin takes the next server in v's smooth weighted order that is
// not in skip.
func (set *Set) roundRobin(v *view, skip []*server) *server {
	n := uint64(len(v.seq))
	if n == 0 {
		return nil
	}
	start := set.rr.Add(1)
	for i := range n {
		if c := v.seq[(start+i)%n]; !slices.Contains(skip, c) {
			return c
		}
	}
	return nil
}

// leastConn takes the server with the fewest sessions for its weight,
// not in skip; ties go in turn.
func (set *Set) leastConn(v *view, skip []*server) *server {
	n := len(v.up)
	if n == 0 {
		return nil
	}
	start := int(set.rr.Add(1) % uint64(n))
	best := -1
	var bestLoad int64
	for k := range n {
		i := (start + k) % n
		c := v.up[i]
		if slices.Contains(skip, c) {
			continue
		}
		if load := c.active.Load(); best < 0 || lighter(load, v.w[i], bestLoad, v.w[best]) {
			best, bestLoad = i, load
		}
	}
	if best < 0 {
		return nil
	}
	return v.up[best]
}

// lighter reports whether a sessions on weight wa is a lighter load than
// b sessions on weight wb.
func lighter(a int64, wa int, b int64, wb int) bool {
	return a*int64(wb) < b*int64(wa)
}

// twoChoices draws two servers in proportion to their weights and takes
// the lighter; a draw that lands in skip falls back to leastConn.
func (set *Set) twoChoices(v *view, skip []*server) *server {
	if len(v.cum) == 0 {
		return nil
	}
	total := v.cum[len(v.cum)-1]
	draw := func() int {
		i, _ := slices.BinarySearch(v.cum, rand.IntN(total)+1)
		return i
	}
	i, j := draw(), draw()
	a, b := v.up[i], v.up[j]
	switch aok, bok := !slices.Contains(skip, a), !slices.Contains(skip, b); {
	case aok && bok:
		if lighter(b.active.Load(), v.w[j], a.active.Load(), v.w[i]) {
			return b
		}
		return a
	case aok:
		return a
	case bok:
		return b
	}
	return set.leastConn(v, skip)
}

// rendezvous takes the server with the highest weighted score for ip
// (weighted rendezvous hashing), not in skip. A server joining or leaving
// changes the pick only of the clients whose top score it holds.
func rendezvous(v *view, ip netip.Addr, skip []*server) *server {
	h := hashIP(ip)
	var best *server
	bestScore := math.Inf(-1)
	for i, c := range v.up {
		if slices.Contains(skip, c) {
			continue
		}
		// u is uniform in (0, 1); -w/ln(u) is the weighted score.
		u := (float64(mix(h^c.hash)>>11) + 0.5) / (1 << 53)
		if score := -float64(v.w[i]) / math.Log(u); score > bestScore {
			best, bestScore = c, score
		}
	}
	return best
}

// smoothOrder is the smooth weighted round-robin order over up, whose
// weights are w (as nginx spreads weights): each server appears its
// weight times, spread out rather than in runs.
func smoothOrder(up []*server, w []int) []*server {
	total := 0
	for _, x := range w {
		total += x
	}
	seq := make([]*server, 0, total)
	cur := make([]int, len(up))
	for range total {
		best := 0
		for i := range up {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq = append(seq, up[best])
	}
	return seq
}

// FNV-1a, 64 bits, then a finalizer: stable across processes and
// versions, so that relays side by side send a client to the same server.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix(h)
}

func hashIP(ip netip.Addr) uint64 {
	b := ip.As16()
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix(h)
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
