package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The machine has two cores; the controller, the API server, etcd and the
// harness share them. Their CPU time per phase says which one bounds a
// phase's duration.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on Linux.
const clockTicks = 100

// cpuTimes is the user+system CPU seconds of each process of a run.
type cpuTimes map[string]float64

// sampleCPU reads the CPU time of the controller (pid), of this process (the
// harness: the test STS, the Ready count) and of its children the envtest API
// server and etcd.
func sampleCPU(controllerPID int) (cpuTimes, error) {
	t := cpuTimes{}
	self := os.Getpid()
	for name, pid := range map[string]int{"controller": controllerPID, "harness": self} {
		st, err := readStat(pid)
		if err != nil {
			return nil, err
		}
		t[name] = st.cpu
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		st, err := readStat(pid)
		if err != nil || st.ppid != self {
			continue // gone, or not ours
		}
		if st.comm == "kube-apiserver" || st.comm == "etcd" {
			t[st.comm] += st.cpu
		}
	}
	if t["kube-apiserver"] == 0 || t["etcd"] == 0 {
		return nil, fmt.Errorf("no kube-apiserver or etcd among the children of %d: %v", self, t)
	}
	return t, nil
}

// minus is t - before, per process.
func (t cpuTimes) minus(before cpuTimes) cpuTimes {
	d := cpuTimes{}
	for k, v := range t {
		d[k] = v - before[k]
	}
	return d
}

// procStat is what sampleCPU needs of /proc/<pid>/stat.
type procStat struct {
	comm string
	ppid int
	cpu  float64 // utime+stime, seconds
}

// readStat parses /proc/<pid>/stat. The command name is in parentheses and
// may hold spaces; after it come state, ppid (field 4), and utime and stime
// (fields 14 and 15).
func readStat(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	u, err2 := strconv.ParseFloat(f[11], 64)
	st, err3 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procStat{comm: s[open+1 : end], ppid: ppid, cpu: (u + st) / clockTicks}, nil
}
