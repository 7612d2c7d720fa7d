package node

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
)

// Network is the node's own L2 segment: a bridge on this machine with the
// host at the gateway address and the pods in the rest of the subnet. Pods
// get no default route and no upstream DNS; a FORWARD rule drops whatever
// they send outside the subnet, so they reach only each other and this host.
type Network struct {
	Bridge string
	Subnet *net.IPNet
	// Gateway is the bridge's (the host's) address: the node IP, where the
	// API server, kubelet and servers for pods (MinIO, the webhook) listen.
	Gateway net.IP
}

// ruleComment marks the rig's iptables rule so that a later run finds it.
const ruleComment = "stsbind-node: pods reach only their subnet"

// NewNetwork checks a bridge name and an IPv4 CIDR; the gateway is the first host.
func NewNetwork(bridge, cidr string) (Network, error) {
	ip, subnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return Network{}, err
	}
	if ip.To4() == nil || !ip.Equal(subnet.IP) {
		return Network{}, fmt.Errorf("pod subnet %s must be an IPv4 network address", cidr)
	}
	if ones, _ := subnet.Mask.Size(); ones > 28 {
		return Network{}, fmt.Errorf("pod subnet %s is too small", cidr)
	}
	if bridge == "" || len(bridge) > 15 {
		return Network{}, fmt.Errorf("bridge name %q must have 1 to 15 characters", bridge)
	}
	gw := make(net.IP, 4)
	copy(gw, subnet.IP.To4())
	gw[3]++
	return Network{Bridge: bridge, Subnet: subnet, Gateway: gw}, nil
}

// GatewayCIDR is the bridge address with its prefix: 10.88.0.1/24.
func (n Network) GatewayCIDR() string {
	ones, _ := n.Subnet.Mask.Size()
	return fmt.Sprintf("%s/%d", n.Gateway, ones)
}

// CNIConfig is the conflist containerd hands to the CNI plugins: bridge and
// host-local, gateway on the bridge, no masquerade, no default route; only
// the given ranges (the Service range) are routed, through the host.
func (n Network) CNIConfig(ipamDir string, routes ...string) ([]byte, error) {
	rs := []any{}
	for _, r := range routes {
		rs = append(rs, map[string]any{"dst": r})
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "stsbind-node",
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      n.Bridge,
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": ipamDir,
				"ranges":  []any{[]any{map[string]any{"subnet": n.Subnet.String(), "gateway": n.Gateway.String()}}},
				"routes":  rs,
			},
		}},
	}, "", "  ")
}

// forwardRule is the iptables FORWARD rule (without -A/-D/-I): anything a
// pod sends outside its subnet is dropped.
func (n Network) forwardRule() []string {
	return []string{"FORWARD", "-s", n.Subnet.String(), "!", "-d", n.Subnet.String(),
		"-m", "comment", "--comment", ruleComment, "-j", "DROP"}
}

// overlaps reports the first route of another device that overlaps the subnet.
func (n Network) overlaps(routes string) string {
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] == "default" {
			continue
		}
		_, r, err := net.ParseCIDR(f[0])
		if err != nil {
			if ip := net.ParseIP(f[0]); ip != nil {
				r = &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
			} else {
				continue
			}
		}
		dev := ""
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dev" {
				dev = f[i+1]
			}
		}
		if dev != n.Bridge && (r.Contains(n.Subnet.IP) || n.Subnet.Contains(r.IP)) {
			return line
		}
	}
	return ""
}

// check fails when the bridge exists (not the rig's: a stale run of the
// rig was cleaned up before) or the subnet overlaps a route of this machine.
func (n Network) check() error {
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		return fmt.Errorf("bridge %s already exists and is not a node's; choose another name", n.Bridge)
	}
	routes, err := run("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	if r := n.overlaps(routes); r != "" {
		return fmt.Errorf("pod subnet %s overlaps route %q of this machine; choose another", n.Subnet, r)
	}
	return nil
}

// setUp creates the bridge with the gateway address, turns off IPv6 on it,
// and inserts the FORWARD rule.
func (n Network) setUp() error {
	if _, err := run("ip", "link", "add", n.Bridge, "type", "bridge"); err != nil {
		return err
	}
	// No IPv6 on the segment: pods see link-local addresses only.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+n.Bridge+"/disable_ipv6", []byte("1"), 0o644)
	if _, err := run("ip", "addr", "add", n.GatewayCIDR(), "dev", n.Bridge); err != nil {
		return err
	}
	if _, err := run("ip", "link", "set", n.Bridge, "up"); err != nil {
		return err
	}
	_, err := run("iptables", append([]string{"-w", "-I"}, n.forwardRule()...)...)
	return err
}

// tearDown removes the rule (every copy) and the bridge; missing ones are fine.
func (n Network) tearDown() error {
	var errs []string
	for i := 0; i < 10; i++ {
		if _, err := run("iptables", append([]string{"-w", "-C"}, n.forwardRule()...)...); err != nil {
			break
		}
		if _, err := run("iptables", append([]string{"-w", "-D"}, n.forwardRule()...)...); err != nil {
			errs = append(errs, err.Error())
			break
		}
	}
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		if _, err := run("ip", "link", "del", n.Bridge); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("network cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// readIPForward returns the current ip_forward setting ("0" or "1"): the
// bridge plugin's isGateway turns forwarding on, the rig turns it back.
func readIPForward() (string, error) {
	raw, err := os.ReadFile(ipForward)
	return strings.TrimSpace(string(raw)), err
}

func writeIPForward(v string) error {
	if v != "0" && v != "1" {
		return fmt.Errorf("ip_forward value %q", v)
	}
	return os.WriteFile(ipForward, []byte(v), 0o644)
}
