package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/miniotest"
	"github.com/stsbind/stsbind/internal/testrig/node"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

const (
	release    = "stsbind"
	operatorNS = "stsbind-system"
)

// realNode is what the real-node demo started, stopped in reverse by stop.
type realNode struct {
	root, dir string
	helm      string
	node      *node.Node
	minio     *miniotest.Server
	relay     *node.Relay
	lock      *node.Lock
	// s3URL is MinIO where pods reach it: a relay on the bridge address.
	s3URL string
}

func runRealNode(ctx context.Context) (err error) {
	d := &realNode{root: testenv.RepoRoot()}
	defer func() {
		if err != nil && ctx.Err() == nil {
			d.dumpLogs()
		}
		d.stop()
	}()
	if d.dir, err = os.MkdirTemp("", "stsbind-demo-"); err != nil {
		return err
	}
	s := &steps{total: 6}

	t := s.next("What the first run builds (cached in %s, the images in Go's build cache)", cacheDir())
	for _, a := range []asset{envtestAssets, nodeAssets, minioAsset} {
		if err := ensure(ctx, d.root, a); err != nil {
			return err
		}
	}
	if d.helm, err = ensureHelm(ctx, d.root); err != nil {
		return err
	}
	tars, err := buildImages(ctx, d.root, d.dir)
	if err != nil {
		return err
	}
	done(t, "all at hand")

	t = s.next("A real one-node cluster: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy")
	log := &indented{w: os.Stdout, prefix: "      "}
	if d.lock, err = acquire(ctx, log); err != nil {
		return err
	}
	d.node, err = node.Start(ctx, node.Options{Services: true, Images: tars, Lock: d.lock, Log: log})
	if err != nil {
		return err
	}
	done(t, "node Ready, API server and token issuer %s", d.node.APIServerURL)

	t = s.next("MinIO as STS and S3, verifying the node's ServiceAccount tokens, reachable from pods on the bridge")
	d.minio, err = miniotest.Start(ctx, miniotest.Options{RepoRoot: d.root, IssuerURL: d.node.IssuerURL, CAData: d.node.CA.CertPEM})
	if err != nil {
		return err
	}
	u, err := url.Parse(d.minio.Endpoint)
	if err != nil {
		return err
	}
	if d.relay, err = d.node.NewRelay(u.Host); err != nil {
		return err
	}
	d.s3URL = "http://" + d.relay.Addr()
	if err := waitForSTS(ctx, d.node.Client, d.minio.Endpoint, d.minio.RoleARN); err != nil {
		return fmt.Errorf("%w\nminio output:\n%s", err, d.minio.Output())
	}
	done(t, "MinIO at %s, for pods %s, role %s", d.minio.Endpoint, d.s3URL, d.minio.RoleARN)

	c := cluster{client: d.node.Client, kubectl: d.node.Kubectl, kubeconfig: d.node.Kubeconfig}
	t = s.next("helm install charts/stsbind: the chart's defaults but the image built here and the default provider's name")
	if err := d.install(ctx, c); err != nil {
		return err
	}
	done(t, "installed")

	t = s.next("The admin's ClusterSTSProvider for MinIO, then the sample binding from config/samples and its ServiceAccount")
	b, err := applyBinding(ctx, c, d.root, d.s3URL, d.minio.RoleARN, func() string { return d.operatorLogs(c) })
	if err != nil {
		return err
	}
	done(t, "binding Ready")

	t = s.next("A real pod of ServiceAccount %s (Files mode, user %d, read-only root filesystem) lists a bucket", b.Spec.ServiceAccountName, images.NonRoot)
	pod, err := runPod(ctx, c, b.Spec.ServiceAccountName, d.s3URL)
	if err != nil {
		return fmt.Errorf("%w\nkubelet log (tail):\n%s", err, d.node.LogTail("kubelet", 30))
	}
	done(t, "pod %s", pod.Status.Phase)

	fmt.Printf("\nstsbind is running on the real node (its processes' logs: %s). Look around:\n"+
		"  export KUBECONFIG=%s PATH=%s:$PATH\n"+
		"  kubectl get csp\n"+
		"  kubectl get irb -A -o wide\n"+
		"  kubectl logs %s\n"+
		"  kubectl describe irb %s\n"+
		"  kubectl -n %s get pods,lease   # two replicas, one leader\n"+
		"  kubectl -n %s logs -l app.kubernetes.io/name=stsbind --prefix\n"+
		"Ctrl-C stops and cleans up.\n",
		d.node.Logs, d.node.Kubeconfig, filepath.Dir(d.node.Kubectl), pod.Name, b.Name, operatorNS, operatorNS)
	<-ctx.Done()
	fmt.Println("\nStopping.")
	return nil
}

// install runs helm install with the local image and waits until the
// operator is ready. The chart's own default provider would point at AWS:
// the admin's provider for MinIO is applied next, under the name the
// operator is told to default to.
func (d *realNode) install(ctx context.Context, c cluster) error {
	repo, tag, _ := strings.Cut(images.OperatorName, ":")
	set := []string{
		"image.repository=" + repo, "image.tag=" + tag, "image.pullPolicy=Never",
		"defaultProvider.create=false", "defaultProvider.name=" + demoProvider,
	}
	args := []string{"install", release, "charts/stsbind", "--namespace", operatorNS, "--create-namespace", "--wait", "--timeout", "5m"}
	fmt.Printf("      $ helm %s \\\n          --set %s\n", strings.Join(args, " "), strings.Join(set, " --set "))
	for _, v := range set {
		args = append(args, "--set", v)
	}
	cmd := exec.CommandContext(ctx, d.helm, append(args, "--kubeconfig", d.node.Kubeconfig)...)
	cmd.Dir = d.root
	// Helm's caches and config stay in the demo's dir.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(d.dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(d.dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(d.dir, "helm", "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm install: %w\n%s\n%s", err, out, d.operatorLogs(c))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "STATUS:") || strings.HasPrefix(line, "stsbind ") {
			fmt.Printf("      %s\n", line)
		}
	}
	pods, err := c.run(nil, "-n", operatorNS, "get", "pods", "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Print(indent(pods))
	return nil
}

// acquire takes the machine-wide node lock, which another engineer's
// real-node tests may hold, and gives up on Ctrl-C: node.Acquire itself
// waits without a context (the lock goes with the process).
func acquire(ctx context.Context, log io.Writer) (*node.Lock, error) {
	type result struct {
		lock *node.Lock
		err  error
	}
	got := make(chan result, 1)
	go func() {
		l, err := node.Acquire(30*time.Minute, log)
		got <- result{l, err}
	}()
	t := time.Now()
	select {
	case r := <-got:
		if r.err == nil && time.Since(t) > time.Second {
			fmt.Fprintf(log, "node: the other node stopped after %s\n", since(t))
		}
		return r.lock, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *realNode) operatorLogs(c cluster) string {
	out, _ := c.run(nil, "-n", operatorNS, "logs", "-l", "app.kubernetes.io/name=stsbind", "--tail=30", "--prefix")
	return "operator pods' logs (tail):\n" + out
}

// dumpLogs prints the ends of the node's logs after a failure.
func (d *realNode) dumpLogs() {
	if d.node == nil {
		return
	}
	for _, name := range []string{"kubelet", "containerd", "kube-apiserver"} {
		fmt.Fprintf(os.Stderr, "--- %s log (tail)\n%s\n", name, d.node.LogTail(name, 20))
	}
}

// stop removes everything the demo started: the relay, MinIO, then the node
// with every pod, mount, iptables rule and the bridge (the node's Stop).
func (d *realNode) stop() {
	t := time.Now()
	if d.relay != nil {
		d.relay.Close()
	}
	if d.minio != nil {
		d.minio.Stop()
	}
	var err error
	if d.node != nil {
		bridge := d.node.Network.Bridge
		if err = d.node.Stop(); err == nil {
			fmt.Printf("Stopped the operator pods, the node's processes and MinIO; removed mounts, iptables rules and bridge %s (%s).\n", bridge, since(t))
		}
	}
	if d.lock != nil {
		d.lock.Release()
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cleaning up the node: %v\n(`go run ./hack/node clean` tries again)\n", err)
	}
}
