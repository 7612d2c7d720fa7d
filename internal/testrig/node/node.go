// Package node runs a real one-node Kubernetes cluster on this machine for
// tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// kubelet (built from the Go module proxy, same version as envtest), with
// Debian's containerd and runc and a CNI bridge of its own.
//
// Everything lives in one work dir. Traffic stays on this machine: pods sit
// on the rig's bridge with no default route and no upstream DNS, and a
// FORWARD rule drops what they send outside their subnet; servers for pods
// listen on the bridge address (Node.Network.Gateway). Stop ends every
// process by PID, unmounts what kubelet and containerd mounted, removes the
// pods' cgroups, the iptables rules, the bridge, and restores ip_forward; it
// is safe after a partial Start. A run that died without Stop is cleaned up
// by the next Start (or `go run ./hack/node clean`). One node at a time per
// machine: Start waits for a lock.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/internal/testrig/images"
)

// Options configure the node; the zero value works.
type Options struct {
	// TempDir holds the node's work dir; default os.TempDir().
	TempDir string
	// Bridge is the Linux bridge the rig creates; default stsbind0.
	Bridge string
	// PodCIDR is the pods' subnet; the host is its first address. Default 10.88.0.0/24.
	PodCIDR string
	// NodeName defaults to stsbind-node.
	NodeName string
	// Images are OCI layout tars (internal/testrig/images) imported before
	// kubelet starts; they must include SandboxImage.
	Images []string
	// SandboxImage is the pause image; default images.PauseName.
	SandboxImage string
	// CNIBinDir holds the CNI plugins; default /usr/lib/cni (Debian).
	CNIBinDir string
	// Services runs kube-proxy and routes the Service range into pods, so
	// that in-cluster clients reach the API server through the `kubernetes`
	// Service and the API server reaches webhooks behind Services.
	Services bool
	// KubeletSyncFrequency: zero keeps kubelet's default (1m), which decides
	// how soon a changed Secret reaches a running pod.
	KubeletSyncFrequency time.Duration
	// KubeletVerbosity is kubelet's --v; default 1.
	KubeletVerbosity int
	// ReadyTimeout bounds the wait for the Node to be Ready; default 2m.
	ReadyTimeout time.Duration
	// LockTimeout bounds the wait for another node on this machine; default 30m.
	LockTimeout time.Duration
	// Lock, when set, is held by the caller already; Stop leaves it held.
	Lock *Lock
	// Log receives progress lines; default os.Stderr.
	Log io.Writer
}

func (o *Options) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.TempDir, os.TempDir())
	def(&o.Bridge, "stsbind0")
	def(&o.PodCIDR, "10.88.0.0/24")
	def(&o.NodeName, "stsbind-node")
	def(&o.SandboxImage, images.PauseName)
	def(&o.CNIBinDir, "/usr/lib/cni")
	if o.KubeletVerbosity == 0 {
		o.KubeletVerbosity = 1
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Minute
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
}

// Node is a running one-node cluster.
type Node struct {
	// Dir is the work dir; Logs holds each process's log.
	Dir, Logs string
	Network   Network
	CA        *CA
	// APIServerURL and IssuerURL are both https://<gateway>:<port>.
	APIServerURL, IssuerURL string
	// Kubeconfig is an admin kubeconfig (system:masters); Kubectl the binary.
	Kubeconfig, Kubectl string
	Config              *rest.Config
	Client              client.Client
	ContainerdSocket    string
	// Timings are the durations of Start's stages, in order.
	Timings []Stage

	opts    Options
	bins    binaries
	apiPort int
	procs   map[string]*proc
	order   []*proc
	lock    *Lock // taken by Start, released by Stop
	state   *state
}

// Stage is one timed step of Start.
type Stage struct {
	Name     string
	Duration time.Duration
}

// Start brings the node up and waits until it is Ready. On error it has
// already cleaned up what it made.
func Start(ctx context.Context, opts Options) (n *Node, err error) {
	opts.defaults()
	n = &Node{opts: opts, procs: map[string]*proc{}}
	defer func() {
		if err != nil {
			if stopErr := n.Stop(); stopErr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, stopErr)
			}
			n = nil
		}
	}()
	if n.Network, err = NewNetwork(opts.Bridge, opts.PodCIDR); err != nil {
		return n, err
	}
	t := time.Now()
	stage := func(name string) {
		n.Timings = append(n.Timings, Stage{name, time.Since(t)})
		fmt.Fprintf(opts.Log, "node: %s (%s)\n", name, time.Since(t).Round(time.Millisecond))
		t = time.Now()
	}
	if err := Preflight(); err != nil {
		return n, err
	}
	if n.bins, err = findBinaries(opts.CNIBinDir); err != nil {
		return n, err
	}
	n.Kubectl = n.bins.kubectl
	stage("binaries found")
	if opts.Lock == nil {
		if n.lock, err = Acquire(opts.LockTimeout, opts.Log); err != nil {
			return n, err
		}
	}
	if err := cleanStale(opts.Log); err != nil {
		return n, err
	}
	stage("lock taken")
	if err := n.Network.check(); err != nil {
		return n, err
	}
	if err := n.prepare(); err != nil {
		return n, err
	}
	if err := n.Network.setUp(); err != nil {
		return n, err
	}
	stage("bridge " + n.Network.Bridge + " " + n.Network.GatewayCIDR())
	if err := n.startControlPlane(); err != nil {
		return n, err
	}
	if err := n.connect(ctx); err != nil {
		return n, err
	}
	stage("control plane at " + n.APIServerURL)
	if err := n.startContainerd(); err != nil {
		return n, err
	}
	if err := n.ImportImages(opts.Images...); err != nil {
		return n, err
	}
	stage(fmt.Sprintf("containerd with %d images", len(opts.Images)))
	if err := n.startKubelet(); err != nil {
		return n, err
	}
	if opts.Services {
		if err := n.startProxy(); err != nil {
			return n, err
		}
	}
	if err := n.waitNodeReady(ctx, opts.ReadyTimeout); err != nil {
		return n, err
	}
	if err := n.waitDefaultServiceAccount(ctx, opts.ReadyTimeout); err != nil {
		return n, err
	}
	stage("node " + opts.NodeName + " Ready")
	return n, nil
}

// prepare makes the work dir and records, before anything changes, what
// Stop (or a later cleanStale) must put back.
func (n *Node) prepare() error {
	dir, err := os.MkdirTemp(n.opts.TempDir, "stsbind-node-")
	if err != nil {
		return err
	}
	n.Dir, n.Logs = dir, filepath.Join(dir, "logs")
	n.ContainerdSocket = filepath.Join(dir, "containerd", "containerd.sock")
	n.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.MkdirAll(n.Logs, 0o755); err != nil {
		return err
	}
	fwd, err := readIPForward()
	if err != nil {
		return err
	}
	n.state = &state{Dir: dir, Bridge: n.Network.Bridge, PodCIDR: n.Network.Subnet.String(), IPForward: fwd, IPTables: saveIPTables()}
	if err := n.state.save(); err != nil {
		return err
	}
	n.CA, err = NewCA()
	return err
}

// start starts and records a node process.
func (n *Node) start(name, bin string, args, env []string) (*proc, error) {
	if env == nil {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + n.Dir}
	}
	p, err := startProc(n.Logs, name, bin, args, env)
	if err != nil {
		return nil, err
	}
	n.procs[name] = p
	n.order = append(n.order, p)
	return p, nil
}

// LogTail is the end of a node process's log ("kubelet", "containerd", ...).
func (n *Node) LogTail(name string, lines int) string {
	return tailFile(filepath.Join(n.Logs, name+".log"), lines)
}

// Stop ends the node and removes everything it made. Safe on a partial
// Start and more than once.
func (n *Node) Stop() error {
	if n == nil {
		return nil
	}
	var errs []error
	// kubelet first, so that nothing restarts the containers killed next.
	for _, name := range []string{"kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"} {
		n.procs[name].stop(10 * time.Second)
	}
	if n.Dir != "" {
		errs = append(errs, killPods())
		killMatching(n.Dir) // the containerd shims
	}
	for _, name := range []string{"containerd", "kube-apiserver", "etcd"} {
		n.procs[name].stop(10 * time.Second)
	}
	if n.state != nil {
		errs = append(errs, n.state.restore())
		n.state = nil
	}
	if n.lock != nil {
		n.lock.Release()
		n.lock = nil
	}
	return errors.Join(errs...)
}

// RunKubectl runs kubectl as the admin and returns its combined output.
func (n *Node) RunKubectl(args ...string) (string, error) {
	return run(n.Kubectl, append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
}

// Describe is a one-line summary of the start timings.
func (n *Node) Describe() string {
	var parts []string
	var total time.Duration
	for _, s := range n.Timings {
		parts = append(parts, fmt.Sprintf("%s %s", s.Name, s.Duration.Round(time.Millisecond)))
		total += s.Duration
	}
	return fmt.Sprintf("node up in %s: %s", total.Round(time.Millisecond), strings.Join(parts, ", "))
}
