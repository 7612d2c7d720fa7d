package bench

import (
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
// harness: its watch, the test STS) and of its children the envtest API
// server and etcd.
func sampleCPU(controllerPID int) (cpuTimes, error) {
	t := cpuTimes{}
	self := os.Getpid()
	for name, pid := range map[string]int{"controller": controllerPID, "harness": self} {
		s, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		t[name] = s
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		comm, ppid, err := procParent(pid)
		if err != nil || ppid != self {
			continue // gone, or not ours
		}
		switch comm {
		case "kube-apiserver", "etcd":
			s, err := procCPU(pid)
			if err != nil {
				continue
			}
			t[comm] += s
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

// statFields are the fields of /proc/<pid>/stat after the command name,
// which is in parentheses and may hold spaces.
func statFields(pid int) (comm string, fields []string, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", nil, err
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", nil, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return s[open+1 : end], strings.Fields(s[end+1:]), nil
}

func procParent(pid int) (string, int, error) {
	comm, f, err := statFields(pid)
	if err != nil || len(f) < 2 {
		return "", 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
	}
	ppid, err := strconv.Atoi(f[1]) // field 4
	return comm, ppid, err
}

// procCPU is utime+stime (fields 14 and 15) in seconds.
func procCPU(pid int) (float64, error) {
	_, f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	return (u + s) / clockTicks, nil
}
