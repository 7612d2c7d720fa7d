// Package realnode runs stsbind against a real one-node cluster on this
// machine (internal/testrig/node): kubelet and containerd start the pods the
// webhook mutated, from images built here, and the pods' own processes use
// the injected credentials against MinIO, which verifies the node's tokens.
//
// The node needs root, containerd, runc, the CNI plugins, iptables and
// busybox-static (.ci/run installs them). A missing part fails the package;
// it never skips.
package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stsbind/stsbind/internal/miniotest"
	"github.com/stsbind/stsbind/internal/testenv"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/node"
)

const region = "us-east-1"

var (
	cluster *node.Node
	k8s     client.Client
	minio   *miniotest.Server
	// s3URL is MinIO as pods reach it: on the bridge address.
	s3URL    string
	operator *operatorProc
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (code int, err error) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := node.Preflight(); err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp("", "stsbind-realnode-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)

	// The images build while the node starts: the pause image is needed
	// only by the first pod.
	t0 := time.Now()
	type built struct {
		tars map[string]string
		err  error
	}
	imagesDone := make(chan built, 1)
	go func() {
		tars, err := images.Build(ctx, testenv.RepoRoot(), dir)
		imagesDone <- built{tars, err}
	}()
	cluster, err = node.Start(ctx, node.Options{Log: os.Stdout})
	if err != nil {
		<-imagesDone
		return 1, err
	}
	defer func() {
		if code != 0 {
			for _, name := range []string{"kubelet", "containerd"} {
				fmt.Fprintf(os.Stderr, "--- %s log (tail)\n%s\n", name, cluster.LogTail(name, 40))
			}
		}
		if stopErr := cluster.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "realnode: stopping the node:", stopErr)
			code = 1
		}
	}()
	k8s = cluster.Client
	fmt.Printf("realnode: %s\n", cluster.Describe())
	b := <-imagesDone
	if b.err != nil {
		return 1, b.err
	}
	t1 := time.Now()
	var tars []string
	for _, t := range b.tars {
		tars = append(tars, t)
	}
	if err := cluster.ImportImages(tars...); err != nil {
		return 1, err
	}
	fmt.Printf("realnode: images built in %s (beside the node start), imported in %s\n",
		t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))

	t0 = time.Now()
	minio, err = miniotest.Start(ctx, miniotest.Options{RepoRoot: testenv.RepoRoot(), IssuerURL: cluster.IssuerURL, CAData: cluster.CA.CertPEM})
	if err != nil {
		return 1, err
	}
	defer minio.Stop()
	_, minioPort, err := net.SplitHostPort(minio.Endpoint[len("http://"):])
	if err != nil {
		return 1, err
	}
	r, err := newRelay(net.JoinHostPort(cluster.Network.Gateway.String(), "0"), net.JoinHostPort("127.0.0.1", minioPort))
	if err != nil {
		return 1, err
	}
	defer r.Close()
	s3URL = "http://" + r.Addr()
	if err := waitForMinIOSTS(ctx); err != nil {
		return 1, fmt.Errorf("%w\nminio output:\n%s", err, minio.Output())
	}
	fmt.Printf("realnode: MinIO STS answering in %s, role %s, pods reach it at %s\n", time.Since(t0).Round(time.Millisecond), minio.RoleARN, s3URL)

	t0 = time.Now()
	operator, err = startOperator(ctx, filepath.Join(dir, "manager"), dir)
	if err != nil {
		return 1, err
	}
	defer func() {
		operator.stop()
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- operator log (tail)\n%s\n", operator.tail(60))
		}
	}()
	fmt.Printf("realnode: operator on the host, webhook at %s (%s)\n", operator.webhookURL, time.Since(t0).Round(time.Millisecond))
	return m.Run(), nil
}

// itoa keeps flag building short.
func itoa(i int) string { return strconv.Itoa(i) }
