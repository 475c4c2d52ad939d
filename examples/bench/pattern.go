package main

// The source server's stream: the byte at offset o is pattern[o%patternLen].
// patternLen is prime and not a power of two, so a slip by any whole
// number of buffers shows up as a mismatch.
const patternLen = 65521

// patternBuf holds the pattern repeated so that any window of up to
// ioBufSize bytes starting anywhere in the first period is one slice.
var patternBuf = func() []byte {
	b := make([]byte, patternLen+ioBufSize)
	x := uint32(2463534242)
	for i := range patternLen {
		// xorshift32: deterministic, no visible period within patternLen.
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x >> 24)
	}
	for i := patternLen; i < len(b); i++ {
		b[i] = b[i-patternLen]
	}
	return b
}()

// patternChunk returns the n bytes of the stream (n <= ioBufSize) that
// start at offset off. The result must not be modified.
func patternChunk(off int64, n int) []byte {
	start := int(off % patternLen)
	return patternBuf[start : start+n]
}
