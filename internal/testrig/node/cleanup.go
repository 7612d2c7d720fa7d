package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mountsUnder returns the mount points in mountinfo at or below dir,
// deepest first, so that unmounting them in order never finds a busy parent.
func mountsUnder(mountinfo, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i], "/") > strings.Count(out[j], "/")
	})
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll detaches every mount under dir: kubelet's pod volumes (tmpfs
// for Secrets and tokens), containerd's rootfs overlays, sandbox shm and
// network namespace mounts. Mounts stacked on one point take several rounds.
func unmountAll(dir string) error {
	for round := 0; round < 5; round++ {
		raw, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		mounts := mountsUnder(string(raw), dir)
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	raw, _ := os.ReadFile("/proc/self/mountinfo")
	if left := mountsUnder(string(raw), dir); len(left) > 0 {
		return fmt.Errorf("mounts left under %s: %v", dir, left)
	}
	return nil
}

// cgroupRoot holds the cgroup v1 hierarchies (and cgroup2 at unified).
const cgroupRoot = "/sys/fs/cgroup"

// podCgroups returns the "kubepods" cgroup directories kubelet (cgroupfs
// driver) and runc made, one per hierarchy, with every directory below,
// deepest first.
func podCgroups() []string {
	var dirs []string
	tops, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", "kubepods"))
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs
}

// killPods kills, by PID, every process in the pods' cgroups (containers and
// sandboxes), then removes those cgroups.
func killPods() error {
	for round := 0; round < 50; round++ {
		var pids []int
		for _, d := range podCgroups() {
			raw, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, d := range podCgroups() {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// killMatching SIGKILLs, by PID, the processes whose command line names dir:
// the node's containerd shims, and after a crash whatever the rig started.
func killMatching(dir string) {
	pids := pidsMatching(func(cmdline string) bool { return strings.Contains(cmdline, dir) })
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		alive := 0
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil && !isZombie(pid) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
	}
}

func isZombie(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(raw)
	if i := strings.LastIndex(s, ")"); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}
