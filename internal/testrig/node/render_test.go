package node

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestContainerdConfig(t *testing.T) {
	t.Parallel()
	full := containerdConfig{
		Root: "/w/containerd/root", State: "/w/containerd/state", Socket: "/w/containerd/containerd.sock",
		RuncRoot: "/w/containerd/runc", SandboxImage: "stsbind.local/pause:1",
		CNIBinDir: "/usr/lib/cni", CNIConfDir: "/w/cni/net.d", Snapshotter: "overlayfs",
	}
	tests := map[string]struct {
		cfg     containerdConfig
		want    []string
		wantErr string
	}{
		"everything the node needs": {
			cfg: full,
			want: []string{
				`root = "/w/containerd/root"`,
				`state = "/w/containerd/state"`,
				"[grpc]\n  address = \"/w/containerd/containerd.sock\"",
				`sandbox_image = "stsbind.local/pause:1"`,
				"restrict_oom_score_adj = true",
				"netns_mounts_under_state_dir = true",
				`stream_server_address = "127.0.0.1"`,
				"SystemdCgroup = false",
				`Root = "/w/containerd/runc"`,
				`bin_dir = "/usr/lib/cni"`,
				`conf_dir = "/w/cni/net.d"`,
				`snapshotter = "overlayfs"`,
			},
		},
		"quotes are escaped": {
			cfg:  func() containerdConfig { c := full; c.Root = `/w/a"b`; return c }(),
			want: []string{`root = "/w/a\"b"`},
		},
		"missing socket": {
			cfg:     func() containerdConfig { c := full; c.Socket = ""; return c }(),
			wantErr: "socket is empty",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := tc.cfg.render()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(raw), w) {
					t.Errorf("config lacks %q:\n%s", w, raw)
				}
			}
		})
	}
}

func TestKubeletConfig(t *testing.T) {
	t.Parallel()
	base := kubeletConfig{Address: "10.88.0.1", Port: 10250, ClientCAFile: "/w/ca.crt", TLSCertFile: "/w/k.crt", TLSKeyFile: "/w/k.key",
		RuntimeSocket: "/w/c.sock", ResolvConf: "/w/resolv.conf", PodLogsDir: "/w/pod-logs"}
	tests := map[string]struct {
		cfg     kubeletConfig
		want    map[string]any
		absent  []string
		wantErr bool
	}{
		"defaults keep syncFrequency": {
			cfg: base,
			want: map[string]any{
				"address": "10.88.0.1", "port": float64(10250), "failCgroupV1": false, "cgroupDriver": "cgroupfs",
				"containerRuntimeEndpoint": "unix:///w/c.sock", "resolvConf": "/w/resolv.conf", "readOnlyPort": float64(0),
				"imageGCHighThresholdPercent": float64(100),
			},
			absent: []string{"syncFrequency"},
		},
		"sync frequency set": {
			cfg:  func() kubeletConfig { c := base; c.SyncFrequency = 10 * time.Second; return c }(),
			want: map[string]any{"syncFrequency": "10s"},
		},
		"no resolv.conf": {cfg: func() kubeletConfig { c := base; c.ResolvConf = ""; return c }(), wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := tc.cfg.render()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var got map[string]any
			if err := yaml.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if got["kind"] != "KubeletConfiguration" {
				t.Errorf("kind = %v", got["kind"])
			}
			for k, v := range tc.want {
				if diff := cmp.Diff(v, got[k]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", k, diff)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s set: %v", k, got[k])
				}
			}
		})
	}
}

func TestNetwork(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		bridge, cidr string
		wantGW       string
		wantErr      string
	}{
		"slash 24":       {bridge: "stsbind0", cidr: "10.88.0.0/24", wantGW: "10.88.0.1/24"},
		"slash 16":       {bridge: "stsbind0", cidr: "10.88.0.0/16", wantGW: "10.88.0.1/16"},
		"host address":   {bridge: "stsbind0", cidr: "10.88.0.5/24", wantErr: "network address"},
		"ipv6":           {bridge: "stsbind0", cidr: "fd00::/64", wantErr: "IPv4"},
		"too small":      {bridge: "stsbind0", cidr: "10.88.0.0/30", wantErr: "too small"},
		"long bridge":    {bridge: "a-very-long-bridge-name", cidr: "10.88.0.0/24", wantErr: "15 characters"},
		"not a network":  {bridge: "stsbind0", cidr: "ten", wantErr: "invalid CIDR"},
		"no bridge name": {bridge: "", cidr: "10.88.0.0/24", wantErr: "15 characters"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n, err := NewNetwork(tc.bridge, tc.cidr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := n.GatewayCIDR(); got != tc.wantGW {
				t.Errorf("gateway = %s, want %s", got, tc.wantGW)
			}
		})
	}
}

func TestCNIConfig(t *testing.T) {
	t.Parallel()
	n, err := NewNetwork("stsbind0", "10.88.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := n.CNIConfig("/w/ipam")
	if err != nil {
		t.Fatal(err)
	}
	withServices, err := n.CNIConfig("/w/ipam", "10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type      string `json:"type"`
			Bridge    string `json:"bridge"`
			IsGateway bool   `json:"isGateway"`
			IPMasq    bool   `json:"ipMasq"`
			IPAM      struct {
				Type    string             `json:"type"`
				DataDir string             `json:"dataDir"`
				Ranges  [][]map[string]any `json:"ranges"`
				Routes  []any              `json:"routes"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	p := got.Plugins[0]
	if len(got.Plugins) != 1 || p.Type != "bridge" || p.Bridge != "stsbind0" || !p.IsGateway || p.IPMasq {
		t.Errorf("plugin = %+v", p)
	}
	if p.IPAM.Type != "host-local" || p.IPAM.DataDir != "/w/ipam" || p.IPAM.Routes == nil || len(p.IPAM.Routes) != 0 {
		t.Errorf("ipam = %+v (want host-local in the work dir, an empty route list)", p.IPAM)
	}
	if r := p.IPAM.Ranges[0][0]; r["subnet"] != "10.88.0.0/24" || r["gateway"] != "10.88.0.1" {
		t.Errorf("range = %v", r)
	}
	if err := json.Unmarshal(withServices, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{map[string]any{"dst": "10.96.0.0/24"}}, got.Plugins[0].IPAM.Routes); diff != "" {
		t.Errorf("routes with Services (-want +got):\n%s", diff)
	}
}

func TestProxyConfig(t *testing.T) {
	t.Parallel()
	base := proxyConfig{Kubeconfig: "/w/p.kubeconfig", NodeName: "n", ClusterCIDR: "10.88.0.0/24", NodeIP: "10.88.0.1", HealthzPort: 1, MetricsPort: 2}
	raw, err := base.render()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"mode": "iptables", "nodePortAddresses": []any{"10.88.0.1/32"}, "bindAddress": "10.88.0.1",
		"healthzBindAddress": "127.0.0.1:1", "metricsBindAddress": "127.0.0.1:2", "oomScoreAdj": float64(0),
		"iptables":  map[string]any{"localhostNodePorts": false, "masqueradeAll": false},
		"conntrack": map[string]any{"maxPerCore": float64(0), "min": float64(0), "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
	}
	for k, v := range want {
		if diff := cmp.Diff(v, got[k]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
	base.MetricsPort = 0
	if _, err := base.render(); err == nil {
		t.Error("rendered without a metrics port")
	}
}

func TestOverlaps(t *testing.T) {
	t.Parallel()
	n, _ := NewNetwork("stsbind0", "10.88.0.0/24")
	tests := map[string]struct {
		routes string
		want   string
	}{
		"this machine":  {routes: "default via 192.0.2.1 dev eth0\n192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n"},
		"own bridge":    {routes: "10.88.0.0/24 dev stsbind0 proto kernel scope link src 10.88.0.1\n"},
		"wider route":   {routes: "10.0.0.0/8 dev tun0\n", want: "10.0.0.0/8 dev tun0"},
		"narrower":      {routes: "10.88.0.128/25 dev cni0\n", want: "10.88.0.128/25 dev cni0"},
		"single host":   {routes: "10.88.0.7 via 192.0.2.1 dev eth0\n", want: "10.88.0.7 via 192.0.2.1 dev eth0"},
		"local entries": {routes: "local 10.88.0.1 dev stsbind0 table local proto kernel scope host src 10.88.0.1\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := n.overlaps(tc.routes); got != tc.want {
				t.Errorf("overlaps = %q, want %q", got, tc.want)
			}
		})
	}
}
