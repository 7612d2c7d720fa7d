package realnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// minioProvider is the admin's ClusterSTSProvider for MinIO and the
// operator's --default-provider.
const minioProvider = "minio"

// operatorProc is the stsbind binary of the operator image, run on the host.
type operatorProc struct {
	cmd        *exec.Cmd
	done       chan struct{}
	log        string
	webhookURL string
}

// startOperator installs the CRDs, runs the operator binary against the
// node with its webhook on the bridge address (certificate from the node's
// CA, as cert-manager would provide it), registers the webhook by URL from
// config/webhook, and creates the MinIO provider.
func startOperator(ctx context.Context, bin, dir string) (*operatorProc, error) {
	root := testenv.RepoRoot()
	if _, err := envtest.InstallCRDs(suite.Node.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfPathMissing: true,
	}); err != nil {
		return nil, fmt.Errorf("installing the CRDs: %w", err)
	}
	gw := suite.Node.Network.Gateway
	certDir := filepath.Join(dir, "webhook-certs")
	if err := suite.Node.CA.WriteServing(certDir, gw); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(gw.String(), "0"))
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	o := &operatorProc{done: make(chan struct{}), log: filepath.Join(dir, "operator.log"), webhookURL: fmt.Sprintf("https://%s:%d/mutate--v1-pod", gw, port)}
	logFile, err := os.Create(o.log)
	if err != nil {
		return nil, err
	}
	o.cmd = exec.Command(bin,
		"--kubeconfig", suite.Node.Kubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--default-region", realnodetest.Region,
		"--default-provider", minioProvider,
		"--webhook-cert-mode", "cert-manager",
		"--webhook-cert-dir", certDir,
		"--webhook-host", gw.String(),
		"--webhook-port", strconv.Itoa(port),
		"--webhook-failure-policy", "Fail",
		"--sidecar-image", images.OperatorName,
	)
	o.cmd.Stdout, o.cmd.Stderr = logFile, logFile
	o.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := o.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { _ = o.cmd.Wait(); logFile.Close(); close(o.done) }()
	if err := waitTLS(net.JoinHostPort(gw.String(), strconv.Itoa(port)), 60*time.Second); err != nil {
		o.stop()
		return nil, fmt.Errorf("operator webhook: %w\n%s", err, o.tail(40))
	}
	if err := registerWebhook(ctx, root, o.webhookURL); err != nil {
		o.stop()
		return nil, err
	}
	if err := suite.Client.Create(ctx, &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: minioProvider},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region: realnodetest.Region, Endpoint: suite.MinIO.Endpoint, Audience: "sts.amazonaws.com",
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:minio:iam:::role/*"},
		},
	}); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

// registerWebhook creates the MutatingWebhookConfiguration the markers
// generate, pointed at the host by URL, failing closed so that a missed
// injection shows, and never for kube-system.
func registerWebhook(ctx context.Context, root, url string) error {
	raw, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return err
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	cfg.Name = "stsbind-realnode"
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url), CABundle: suite.Node.CA.CertPEM}
		w.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		w.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"},
		}, {
			// Namespaces of TestPodsMissedDuringWebhookOutage get their own webhook.
			Key: outageLabel, Operator: metav1.LabelSelectorOpDoesNotExist,
		}}}
	}
	return suite.Client.Create(ctx, &cfg)
}

func waitTLS(addr string, timeout time.Duration) error {
	roots := x509.NewCertPool()
	roots.AddCert(suite.Node.CA.Cert)
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err == nil {
			c.Close()
			return nil
		}
		last = err
	}
	return fmt.Errorf("not serving TLS at %s after %s: %v", addr, timeout, last)
}

func (o *operatorProc) stop() {
	if o == nil || o.cmd.Process == nil {
		return
	}
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.done:
	case <-time.After(10 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.done
	}
}

func (o *operatorProc) tail(n int) string {
	raw, _ := os.ReadFile(o.log)
	if len(raw) > n*200 {
		raw = raw[len(raw)-n*200:]
	}
	return string(raw)
}
