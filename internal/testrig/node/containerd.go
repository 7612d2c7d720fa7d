package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// containerdConfig is what the rig's containerd needs to know; every path
// is under the node's work dir, so it shares nothing with a system containerd.
type containerdConfig struct {
	Root, State, Socket string
	// RuncRoot is runc's state dir (default /run/containerd/runc).
	RuncRoot     string
	SandboxImage string
	CNIBinDir    string
	CNIConfDir   string
	Snapshotter  string
}

// restrict_oom_score_adj: without CAP_SYS_RESOURCE runc cannot lower a
// score and fails with "can't get final child's PID from pipe: EOF".
// SystemdCgroup off: kubelet drives cgroupfs. netns under the state dir:
// the pods' network namespace mounts stay in the work dir.
var containerdTemplate = template.Must(template.New("containerd").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(`version = 2
root = {{q .Root}}
state = {{q .State}}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = {{q .Socket}}

[ttrpc]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {{q .SandboxImage}}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = {{q .Snapshotter}}
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {{q .RuncRoot}}

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {{q .CNIBinDir}}
    conf_dir = {{q .CNIConfDir}}
    max_conf_num = 1
`))

// render returns the TOML configuration.
func (c containerdConfig) render() ([]byte, error) {
	for name, v := range map[string]string{"root": c.Root, "state": c.State, "socket": c.Socket, "runc root": c.RuncRoot,
		"sandbox image": c.SandboxImage, "CNI bin dir": c.CNIBinDir, "CNI conf dir": c.CNIConfDir, "snapshotter": c.Snapshotter} {
		if v == "" {
			return nil, fmt.Errorf("containerd config: %s is empty", name)
		}
	}
	var buf bytes.Buffer
	err := containerdTemplate.Execute(&buf, c)
	return buf.Bytes(), err
}

// startContainerd writes the config and starts containerd, ready when its
// socket answers `ctr version`.
func (n *Node) startContainerd() error {
	dir := filepath.Join(n.Dir, "containerd")
	cfg := containerdConfig{
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		Socket:       n.ContainerdSocket,
		RuncRoot:     filepath.Join(dir, "runc"),
		SandboxImage: n.opts.SandboxImage,
		CNIBinDir:    n.opts.CNIBinDir,
		CNIConfDir:   filepath.Join(n.Dir, "cni", "net.d"),
		Snapshotter:  "overlayfs",
	}
	raw, err := cfg.render()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "config.toml")
	if err := writeFiles(dir, map[string][]byte{"config.toml": raw}); err != nil {
		return err
	}
	var routes []string
	if n.opts.Services {
		routes = append(routes, ServiceCIDR)
	}
	cni, err := n.Network.CNIConfig(filepath.Join(n.Dir, "cni", "ipam"), routes...)
	if err != nil {
		return err
	}
	if err := writeFiles(cfg.CNIConfDir, map[string][]byte{"10-stsbind.conflist": cni}); err != nil {
		return err
	}
	p, err := n.start("containerd", n.bins.containerd, []string{"--config", conf, "--log-level", "info"}, nil)
	if err != nil {
		return err
	}
	return poll("containerd answering on "+n.ContainerdSocket, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		if err := p.exitedError(); err != nil {
			return false, err
		}
		_, err := run(n.bins.ctr, "--address", n.ContainerdSocket, "version")
		return err == nil, err
	})
}

// ImportImages imports OCI layout tars into the k8s.io namespace, where the
// CRI plugin (and so kubelet) finds them. A layout's index names its image.
func (n *Node) ImportImages(tars ...string) error {
	for _, tar := range tars {
		if _, err := run(n.bins.ctr, "--address", n.ContainerdSocket, "-n", "k8s.io", "images", "import", tar); err != nil {
			return fmt.Errorf("importing %s: %w", filepath.Base(tar), err)
		}
	}
	return nil
}

// Images lists the image names containerd's k8s.io namespace holds.
func (n *Node) Images() ([]string, error) {
	out, err := run(n.bins.ctr, "--address", n.ContainerdSocket, "-n", "k8s.io", "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// shimPIDs finds the containerd shims of this node: they outlive containerd
// (they are daemons), and their command line names the node's socket.
func shimPIDs(dir string) []int {
	return pidsMatching(func(cmdline string) bool {
		return strings.Contains(cmdline, "containerd-shim") && strings.Contains(cmdline, dir)
	})
}

// pidsMatching scans /proc for processes whose command line matches.
func pidsMatching(match func(cmdline string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		if match(strings.ReplaceAll(string(raw), "\x00", " ")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
