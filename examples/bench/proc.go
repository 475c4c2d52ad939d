package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat; Linux
// fixes it at 100 for user space on every architecture Go supports.
const clockTick = 10 * time.Millisecond

// procSample is a reading of a process tree: the root and every living
// descendant (nginx's workers, socat's forked children).
type procSample struct {
	// CPU is user+system time of the tree, including children that have
	// exited and were reaped (cutime+cstime), so a forking proxy's
	// finished sessions still count.
	CPU time.Duration
	// RSSKiB sums VmRSS, PssKiB sums Pss (shared pages split among
	// sharers), FDs counts open descriptors; all zero unless mem was asked.
	RSSKiB, PssKiB int64
	FDs            int
	Procs          int
}

// statFields returns the fields of /proc/PID/stat after the command name,
// so that field N of proc(5) is at index N-3.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// treePIDs lists root and its living descendants.
func treePIDs(root int) ([]int, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", root)); err != nil {
		return nil, fmt.Errorf("proxy process %d: %w", root, err)
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 2 {
			continue // exited meanwhile
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	pids := []int{root}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, children[pids[i]]...)
	}
	return pids, nil
}

// sampleTree reads the tree rooted at root. It fails only when root
// itself cannot be read; descendants that exit meanwhile are skipped.
func sampleTree(root int, mem bool) (procSample, error) {
	var s procSample
	pids, err := treePIDs(root)
	if err != nil {
		return s, err
	}
	for _, pid := range pids {
		f, err := statFields(pid)
		if err != nil || len(f) < 15 {
			if pid == root {
				return s, fmt.Errorf("reading /proc/%d/stat: %v", pid, err)
			}
			continue
		}
		var ticks int64
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		s.CPU += time.Duration(ticks) * clockTick
		s.Procs++
		if !mem {
			continue
		}
		s.RSSKiB += kibField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		s.PssKiB += kibField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
		if d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			names, _ := d.Readdirnames(-1)
			d.Close()
			s.FDs += len(names)
		}
	}
	return s, nil
}

// kibField returns the value of the "Key:   123 kB" line of a /proc file.
func kibField(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				v, _ := strconv.ParseInt(fields[0], 10, 64)
				return v
			}
		}
	}
	return 0
}
