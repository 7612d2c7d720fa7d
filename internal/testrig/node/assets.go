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
	var missing []string
	need := func(dir, name, from string) string {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, fmt.Sprintf("%s (from %s)", p, from))
		}
		return p
	}
	var b binaries
	envtest, err := testenv.Assets()
	if err != nil {
		return b, err
	}
	node, err := NodeAssets()
	if err != nil {
		return b, err
	}
	b.etcd = need(envtest, "etcd", "hack/envtest-assets.sh")
	b.apiserver = need(envtest, "kube-apiserver", "hack/envtest-assets.sh")
	b.kubectl = need(envtest, "kubectl", "hack/envtest-assets.sh")
	b.kubelet = need(node, "kubelet", "hack/node-assets.sh")
	b.controllerManager = need(node, "kube-controller-manager", "hack/node-assets.sh")
	b.scheduler = need(node, "kube-scheduler", "hack/node-assets.sh")
	b.proxy = need(node, "kube-proxy", "hack/node-assets.sh")
	b.containerd = need("/usr/bin", "containerd", "Debian containerd")
	b.ctr = need("/usr/bin", "ctr", "Debian containerd")
	need("/usr/bin", "containerd-shim-runc-v2", "Debian containerd")
	b.runc = need("/usr/sbin", "runc", "Debian runc")
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		need(cniBinDir, plugin, "Debian containernetworking-plugins")
	}
	need("/usr/sbin", "iptables", "Debian iptables")
	need("/usr/sbin", "iptables-save", "Debian iptables")
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (from Debian iproute2)")
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("the real node lacks %s; apt-get install %s", strings.Join(missing, ", "), debianPackages)
	}
	return b, nil
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
