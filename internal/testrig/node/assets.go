package node

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// binaries are the programs the node runs.
type binaries struct {
	etcd, apiserver, kubectl                     string
	kubelet, controllerManager, scheduler, proxy string
	containerd, ctr, runc                        string
}

// debianPackages are what the node needs from Debian (.ci/run installs them).
const debianPackages = "containerd runc containernetworking-plugins iptables busybox-static"

// NodeAssets returns the directory with kubelet, kube-controller-manager,
// kube-scheduler and kube-proxy: $STSBIND_NODE_ASSETS, else the output of
// hack/node-assets.sh, which builds them into the user cache when missing.
func NodeAssets() (string, error) {
	if dir := os.Getenv("STSBIND_NODE_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "node-assets.sh"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/node-assets.sh: %w", err)
	}
	return strings.TrimSpace(out.String()), nil
}

// findBinaries locates every program and CNI plugin, and says what is
// missing and where it comes from, all at once.
func findBinaries(cniBinDir string) (binaries, error) {
	var f finder
	var b binaries
	envtest, err := testenv.Assets()
	if err != nil {
		return b, err
	}
	node, err := NodeAssets()
	if err != nil {
		return b, err
	}
	b.etcd = f.need(envtest, "etcd", "hack/envtest-assets.sh")
	b.apiserver = f.need(envtest, "kube-apiserver", "hack/envtest-assets.sh")
	b.kubectl = f.need(envtest, "kubectl", "hack/envtest-assets.sh")
	b.kubelet = f.need(node, "kubelet", "hack/node-assets.sh")
	b.controllerManager = f.need(node, "kube-controller-manager", "hack/node-assets.sh")
	b.scheduler = f.need(node, "kube-scheduler", "hack/node-assets.sh")
	b.proxy = f.need(node, "kube-proxy", "hack/node-assets.sh")
	f.host(&b, cniBinDir)
	return b, f.err()
}

// CheckHostPackages says which of the programs the node takes from Debian
// (containerd, runc, the CNI plugins in cniBinDir, iptables, ip) are
// missing, or nil; an empty cniBinDir means Options' default. Unlike Start
// it builds nothing, so a caller can decide quickly whether a node can run.
func CheckHostPackages(cniBinDir string) error {
	if cniBinDir == "" {
		cniBinDir = "/usr/lib/cni"
	}
	var f finder
	f.host(&binaries{}, cniBinDir)
	return f.err()
}

// finder collects what is missing.
type finder struct{ missing []string }

func (f *finder) need(dir, name, from string) string {
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		f.missing = append(f.missing, fmt.Sprintf("%s (from %s)", p, from))
	}
	return p
}

// host locates the programs that come from Debian packages.
func (f *finder) host(b *binaries, cniBinDir string) {
	b.containerd = f.need("/usr/bin", "containerd", "Debian containerd")
	b.ctr = f.need("/usr/bin", "ctr", "Debian containerd")
	f.need("/usr/bin", "containerd-shim-runc-v2", "Debian containerd")
	b.runc = f.need("/usr/sbin", "runc", "Debian runc")
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		f.need(cniBinDir, plugin, "Debian containernetworking-plugins")
	}
	f.need("/usr/sbin", "iptables", "Debian iptables")
	f.need("/usr/sbin", "iptables-save", "Debian iptables")
	if _, err := exec.LookPath("ip"); err != nil {
		f.missing = append(f.missing, "ip (from Debian iproute2)")
	}
}

func (f *finder) err() error {
	if len(f.missing) > 0 {
		return fmt.Errorf("the real node lacks %s; apt-get install %s", strings.Join(f.missing, ", "), debianPackages)
	}
	return nil
}

// Preflight says why this machine cannot run the node, or nil: root,
// cgroups mounted, the bridge netfilter and overlayfs there.
func Preflight() error {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root (kubelet, containerd and the bridge need it)")
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "memory")); err != nil {
		if _, err2 := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err2 != nil {
			why = append(why, "no cgroup hierarchy at "+cgroupRoot)
		}
	}
	if raw, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(raw), "overlay") {
		why = append(why, "no overlayfs in /proc/filesystems")
	}
	if len(why) > 0 {
		return fmt.Errorf("this machine cannot run a real node: %s", strings.Join(why, "; "))
	}
	return nil
}
