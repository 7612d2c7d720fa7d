package node

import (
	"fmt"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// proxyConfig is what the rig's kube-proxy needs to know.
type proxyConfig struct {
	Kubeconfig, NodeName, ClusterCIDR, NodeIP string
	// HealthzPort and MetricsPort are on 127.0.0.1 (kube-proxy cannot turn
	// them off, and their defaults bind every interface or a fixed port).
	HealthzPort, MetricsPort int
}

// render returns the KubeProxyConfiguration: iptables mode; NodePorts only
// on the bridge address (never on the machine's other interfaces), not on
// localhost (that would set route_localnet); conntrack limits, timeouts and
// the OOM score left as they are: they are machine-wide settings.
func (c proxyConfig) render() ([]byte, error) {
	if c.Kubeconfig == "" || c.NodeName == "" || c.ClusterCIDR == "" || c.NodeIP == "" || c.HealthzPort == 0 || c.MetricsPort == 0 {
		return nil, fmt.Errorf("kube-proxy config: kubeconfig, node name, cluster CIDR, node IP and ports are required")
	}
	return yaml.Marshal(map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"clientConnection":   map[string]any{"kubeconfig": c.Kubeconfig},
		"hostnameOverride":   c.NodeName,
		"bindAddress":        c.NodeIP,
		"healthzBindAddress": fmt.Sprintf("127.0.0.1:%d", c.HealthzPort),
		"metricsBindAddress": fmt.Sprintf("127.0.0.1:%d", c.MetricsPort),
		"mode":               "iptables",
		"clusterCIDR":        c.ClusterCIDR,
		"nodePortAddresses":  []string{c.NodeIP + "/32"},
		"oomScoreAdj":        0,
		"iptables":           map[string]any{"localhostNodePorts": false, "masqueradeAll": false},
		"conntrack": map[string]any{
			"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
		},
	})
}

// startProxy runs kube-proxy, so that Services work: pods reach the
// `kubernetes` Service (in-cluster config) and the API server reaches
// webhooks behind a Service.
func (n *Node) startProxy() error {
	dir := filepath.Join(n.Dir, "kube-proxy")
	kc := filepath.Join(n.Dir, "kube-proxy.kubeconfig")
	if err := n.CA.writeKubeconfig(kc, n.APIServerURL, "system:kube-proxy"); err != nil {
		return err
	}
	cfg := proxyConfig{Kubeconfig: kc, NodeName: n.opts.NodeName, ClusterCIDR: n.Network.Subnet.String(), NodeIP: n.Network.Gateway.String()}
	var err error
	if cfg.HealthzPort, err = freePort("127.0.0.1"); err != nil {
		return err
	}
	if cfg.MetricsPort, err = freePort("127.0.0.1"); err != nil {
		return err
	}
	raw, err := cfg.render()
	if err != nil {
		return err
	}
	if err := writeFiles(dir, map[string][]byte{"config.yaml": raw}); err != nil {
		return err
	}
	_, err = n.start("kube-proxy", n.bins.proxy, []string{"--config", filepath.Join(dir, "config.yaml")}, nil)
	return err
}
