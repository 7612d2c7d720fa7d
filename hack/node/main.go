// Command node brings the real one-node cluster of internal/testrig/node up
// by hand, with the test images imported, and keeps it until Ctrl-C.
//
//	go run ./hack/node          up: prints KUBECONFIG and kubectl; Ctrl-C stops and cleans up
//	go run ./hack/node clean    clean up after a run that ended without stopping
//
// Needs root. The first run builds kubelet, kube-controller-manager,
// kube-scheduler and kube-proxy (hack/node-assets.sh, 5-16 minutes) and
// reuses kube-apiserver, etcd and kubectl from hack/envtest-assets.sh.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/node"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 {
		if args[0] == "clean" {
			return node.Clean(os.Stderr)
		}
		return fmt.Errorf("unknown command %q (want no argument, or clean)", args[0])
	}
	logf.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := node.Preflight(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "stsbind-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	t0 := time.Now()
	fmt.Fprintln(os.Stderr, "node: building the images (go build of the operator, sidecar, s3client and pause)")
	tars, err := images.Build(ctx, testenv.RepoRoot(), tmp)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "node: images built in %s\n", time.Since(t0).Round(time.Millisecond))
	var list []string
	for _, t := range tars {
		list = append(list, t)
	}
	n, err := node.Start(ctx, node.Options{Images: list, Services: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "node: cleanup:", err)
		}
	}()
	fmt.Println(n.Describe())
	fmt.Printf("\nThe node is up (logs in %s). Try:\n  export KUBECONFIG=%s\n  %s get nodes -o wide\n  %s run -it --rm bb --image=%s --image-pull-policy=Never --command -- sh\nCtrl-C stops and cleans up.\n",
		n.Logs, n.Kubeconfig, n.Kubectl, n.Kubectl, images.BusyboxName)
	<-ctx.Done()
	fmt.Println("\nStopping.")
	return nil
}
