// Package chart installs charts/stsbind with Helm on the real one-node
// cluster (with kube-proxy, so Services work), from the operator image built
// here, with the chart's defaults: two replicas, leader election, the
// self-managed webhook certificate, the webhook called by the API server
// through its Service, a PodDisruptionBudget. Real pods then use the
// credentials; upgrade and uninstall follow.
//
// Needs root and what e2e/realnode needs, plus bin/helm (make helm). A
// missing part fails the package; it never skips.
package chart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/node"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

const (
	release   = "stsbind"
	namespace = "stsbind-system"
	provider  = "minio"
)

var (
	suite *realnodetest.Suite
	helm  string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	var err error
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, "realnode chart setup:", err)
			code = 1
		}
		if code != 0 {
			suite.DumpLogs(os.Stderr)
			if suite != nil {
				out, _ := suite.Node.RunKubectl("-n", namespace, "logs", "-l", "app.kubernetes.io/name=stsbind", "--tail=40", "--prefix")
				fmt.Fprintf(os.Stderr, "--- operator pods' logs (tail)\n%s\n", out)
			}
		}
		if stopErr := suite.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "realnode chart: stopping:", stopErr)
			code = 1
		}
	}()
	helm = filepath.Join(testenv.RepoRoot(), "bin", "helm")
	if _, err = os.Stat(helm); err != nil {
		err = fmt.Errorf("helm: %w (run make helm)", err)
		return 1
	}
	if suite, err = realnodetest.Start(context.Background(), node.Options{Services: true}); err != nil {
		return 1
	}
	return m.Run()
}

// values are the chart's defaults but for the local image and MinIO as the
// default provider, reached from the operator pods on the bridge.
func values() []string {
	repo, tag, _ := strings.Cut(images.OperatorName, ":")
	return []string{
		"--set", "image.repository=" + repo, "--set", "image.tag=" + tag, "--set", "image.pullPolicy=Never",
		"--set", "defaultProvider.name=" + provider, "--set", "defaultProvider.endpoint=" + suite.S3URL,
		"--set", "defaultRegion=" + realnodetest.Region,
	}
}

// runHelm runs helm against the node and returns its combined output.
func runHelm(args ...string) (string, error) {
	cmd := exec.Command(helm, append(args, "--kubeconfig", suite.Node.Kubeconfig)...)
	cmd.Dir = testenv.RepoRoot()
	// Helm's caches and config stay in the suite's dir.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(suite.Dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(suite.Dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(suite.Dir, "helm", "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
