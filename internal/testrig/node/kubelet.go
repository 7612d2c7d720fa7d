package node

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// kubeletConfig is what the rig's kubelet needs to know.
type kubeletConfig struct {
	Address       string
	Port          int
	ClientCAFile  string
	TLSCertFile   string
	TLSKeyFile    string
	RuntimeSocket string
	ResolvConf    string
	PodLogsDir    string
	SyncFrequency time.Duration
}

// render returns the KubeletConfiguration. failCgroupV1: 1.35+ refuse cgroup
// v1 hosts otherwise; cgroupfs: containerd 1.6 has no RuntimeConfig call to
// tell kubelet its driver; resolvConf: no upstream DNS in pods (see noDNS);
// image GC and eviction thresholds at their limits: the imported images
// cannot be pulled again, and a loaded CI disk must not evict pods.
func (c kubeletConfig) render() ([]byte, error) {
	if c.Address == "" || c.RuntimeSocket == "" || c.ResolvConf == "" || c.PodLogsDir == "" {
		return nil, fmt.Errorf("kubelet config: address, runtime socket, resolv.conf and pod logs dir are required")
	}
	cfg := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"address":                  c.Address,
		"port":                     c.Port,
		"readOnlyPort":             0,
		"healthzPort":              0,
		"containerRuntimeEndpoint": "unix://" + c.RuntimeSocket,
		"cgroupDriver":             "cgroupfs",
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"resolvConf":               c.ResolvConf,
		"podLogsDir":               c.PodLogsDir,
		"tlsCertFile":              c.TLSCertFile,
		"tlsPrivateKeyFile":        c.TLSKeyFile,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": c.ClientCAFile},
		},
		"authorization":                  map[string]any{"mode": "Webhook"},
		"imageGCHighThresholdPercent":    100,
		"imageGCLowThresholdPercent":     99,
		"evictionHard":                   map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		"mergeDefaultEvictionSettings":   false,
		"serializeImagePulls":            false,
		"registerNode":                   true,
		"shutdownGracePeriod":            "0s",
		"containerLogMaxSize":            "10Mi",
		"localStorageCapacityIsolation":  true,
		"enforceNodeAllocatable":         []string{"pods"},
		"cgroupsPerQOS":                  true,
		"nodeStatusReportFrequency":      "10s",
		"nodeStatusUpdateFrequency":      "10s",
		"volumeStatsAggPeriod":           "0s",
		"protectKernelDefaults":          false,
		"streamingConnectionIdleTimeout": "5m",
	}
	if c.SyncFrequency > 0 {
		cfg["syncFrequency"] = c.SyncFrequency.String()
	}
	return yaml.Marshal(cfg)
}

// noDNS is the resolv.conf kubelet hands to pods: their own loopback, where
// nothing answers. An empty file does not do: kubelet then sends no DNS
// config, and containerd 1.6 copies the host's /etc/resolv.conf instead.
const noDNS = "# stsbind-node: no DNS for pods; nothing listens on their loopback port 53\nnameserver 127.0.0.1\n"

// startKubelet writes its serving certificate and configuration and starts it.
func (n *Node) startKubelet() error {
	dir := filepath.Join(n.Dir, "kubelet")
	cert, key, err := n.CA.Issue(CertRequest{CommonName: n.opts.NodeName, DNSNames: []string{n.opts.NodeName}, IPs: []net.IP{n.Network.Gateway}, Server: true})
	if err != nil {
		return err
	}
	port, err := freePort(n.Network.Gateway.String())
	if err != nil {
		return err
	}
	cfg := kubeletConfig{
		Address:       n.Network.Gateway.String(),
		Port:          port,
		ClientCAFile:  filepath.Join(n.Dir, "pki", "ca.crt"),
		TLSCertFile:   filepath.Join(dir, "kubelet.crt"),
		TLSKeyFile:    filepath.Join(dir, "kubelet.key"),
		RuntimeSocket: n.ContainerdSocket,
		ResolvConf:    filepath.Join(dir, "resolv.conf"),
		PodLogsDir:    filepath.Join(n.Dir, "pod-logs"),
		SyncFrequency: n.opts.KubeletSyncFrequency,
	}
	raw, err := cfg.render()
	if err != nil {
		return err
	}
	if err := writeFiles(dir, map[string][]byte{
		"kubelet.crt": cert, "kubelet.key": key, "config.yaml": raw, "resolv.conf": []byte(noDNS),
	}); err != nil {
		return err
	}
	_, err = n.start("kubelet", n.bins.kubelet, []string{
		"--config", filepath.Join(dir, "config.yaml"),
		"--kubeconfig", filepath.Join(n.Dir, "kubelet.kubeconfig"),
		"--root-dir", filepath.Join(n.Dir, "kubelet-root"),
		"--hostname-override", n.opts.NodeName,
		"--node-ip", n.Network.Gateway.String(),
		"--v", strconv.Itoa(n.opts.KubeletVerbosity),
	}, nil)
	return err
}

// waitNodeReady polls the Node until its Ready condition is True.
func (n *Node) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	kubelet := n.procs["kubelet"]
	return poll("node "+n.opts.NodeName+" Ready", timeout, 200*time.Millisecond, func() (bool, error) {
		for _, p := range n.procs {
			if err := p.exitedError(); err != nil {
				return false, err
			}
		}
		var node corev1.Node
		if err := n.Client.Get(ctx, client.ObjectKey{Name: n.opts.NodeName}, &node); err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return true, nil
				}
				return false, fmt.Errorf("Ready=%s %s: %s (kubelet log %s)", c.Status, c.Reason, c.Message, kubelet.log)
			}
		}
		return false, fmt.Errorf("no Ready condition yet")
	})
}

// waitDefaultServiceAccount waits for the controller manager to create the
// default ServiceAccount: until then the ServiceAccount admission plugin
// refuses pods that do not name another.
func (n *Node) waitDefaultServiceAccount(ctx context.Context, timeout time.Duration) error {
	return poll("ServiceAccount default/default", timeout, 100*time.Millisecond, func() (bool, error) {
		var sa corev1.ServiceAccount
		err := n.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &sa)
		return err == nil, err
	})
}
