// Command demo is `make demo`: the stsbind operator at work on this machine
// until Ctrl-C; then everything it started is stopped and removed.
//
// Where the real one-node cluster of internal/testrig/node can run (root,
// cgroups, overlayfs, Debian's containerd, runc, CNI plugins and iptables),
// it brings the node up, installs charts/stsbind with Helm and the locally
// built image, applies a ClusterSTSProvider for MinIO and the sample binding,
// and runs a real pod whose own log shows an S3 listing made with the
// credentials the webhook injected. Elsewhere, or with STSBIND_DEMO=envtest,
// it says why and runs the lighter demo: envtest's kube-apiserver and etcd,
// the operator on the host, a pod that is stored but never run, and the S3
// call made on the host with the files the pod would see.
//
// The first run builds what is not cached yet (in the user cache dir, as
// `make test` does) and says how long each build takes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stsbind/stsbind/internal/testrig/node"
)

func main() {
	logf.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if why := whyNoRealNode(); why != nil {
		fmt.Printf("No real node here: %v.\nFalling back to the envtest demo: kube-apiserver + etcd, the operator on the host, a pod that is stored, not run.\n", why)
		err = runEnvtest(ctx)
	} else {
		fmt.Println("stsbind on a real one-node cluster: kubelet and containerd on bridge stsbind0, traffic kept on this machine.")
		err = runRealNode(ctx)
	}
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "\nInterrupted before the demo was up; what it had started is stopped.")
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// whyNoRealNode is nil when this machine can run the real node, else why not.
func whyNoRealNode() error {
	if os.Getenv("STSBIND_DEMO") == "envtest" {
		return errors.New("STSBIND_DEMO=envtest asks for the envtest demo")
	}
	if err := node.Preflight(); err != nil {
		return err
	}
	return node.CheckHostPackages("")
}

// steps prints the numbered step headers.
type steps struct{ n, total int }

func (s *steps) next(format string, args ...any) time.Time {
	s.n++
	fmt.Printf("\n[%d/%d] %s\n", s.n, s.total, fmt.Sprintf(format, args...))
	return time.Now()
}

func done(t time.Time, format string, args ...any) {
	fmt.Printf("      %s (%s)\n", fmt.Sprintf(format, args...), since(t))
}

func since(t time.Time) time.Duration {
	d := time.Since(t)
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "      " + strings.Join(lines, "\n      ") + "\n"
}

// indented writes whole lines to w under the step headers.
type indented struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	part   []byte
}

func (iw *indented) Write(p []byte) (int, error) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	iw.part = append(iw.part, p...)
	for {
		i := strings.IndexByte(string(iw.part), '\n')
		if i < 0 {
			return len(p), nil
		}
		fmt.Fprintf(iw.w, "%s%s\n", iw.prefix, iw.part[:i])
		iw.part = iw.part[i+1:]
	}
}
