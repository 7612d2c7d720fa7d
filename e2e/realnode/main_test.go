// Package realnode runs stsbind against a real one-node cluster on this
// machine (internal/testrig/node): kubelet and containerd start the pods the
// webhook mutated, from images built here, and the pods' own processes use
// the injected credentials against MinIO, which verifies the node's tokens.
// The operator runs on the host, its webhook registered by URL on the
// bridge address; e2e/realnode/chart installs it with Helm instead.
//
// The node needs root, containerd, runc, the CNI plugins, iptables and
// busybox-static (.ci/run installs them). A missing part fails the package;
// it never skips.
package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/node"
)

var (
	suite    *realnodetest.Suite
	operator *operatorProc
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	ctx := context.Background()
	var err error
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, "realnode setup:", err)
			code = 1
		}
		if code != 0 {
			suite.DumpLogs(os.Stderr)
			if operator != nil {
				fmt.Fprintf(os.Stderr, "--- operator log (tail)\n%s\n", operator.tail(60))
			}
		}
		operator.stop()
		if stopErr := suite.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "realnode: stopping:", stopErr)
			code = 1
		}
	}()
	if suite, err = realnodetest.Start(ctx, node.Options{}); err != nil {
		return 1
	}
	t0 := time.Now()
	if operator, err = startOperator(ctx, filepath.Join(suite.Dir, "manager"), suite.Dir); err != nil {
		return 1
	}
	fmt.Printf("realnode: operator on the host, webhook at %s (%s)\n", operator.webhookURL, time.Since(t0).Round(time.Millisecond))
	return m.Run()
}
