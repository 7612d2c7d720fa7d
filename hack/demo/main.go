// Command demo is `make demo`: a local control plane and MinIO, the stsbind
// operator, the sample binding and a pod, and an S3 call made with the
// credentials the webhook injected. It runs until Ctrl-C, then cleans up.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/miniotest"
	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

const (
	namespace = "default"
	region    = "us-east-1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(n int, format string, args ...any) time.Time {
	fmt.Printf("\n[%d/6] %s\n", n, fmt.Sprintf(format, args...))
	return time.Now()
}

func done(t time.Time, format string, args ...any) {
	fmt.Printf("      %s (%s)\n", fmt.Sprintf(format, args...), time.Since(t).Round(time.Millisecond))
}

func run(ctx context.Context) error {
	root := testenv.RepoRoot()
	work, err := os.MkdirTemp("", "stsbind-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	t := step(1, "Control plane: kube-apiserver + etcd (the first run builds them from the Go module proxy: several minutes)")
	env, err := testenv.Start(testenv.Options{OIDCIssuer: true, Webhook: true})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	kubeconfig, kubectl, err := writeKubeconfig(env, work)
	if err != nil {
		return err
	}
	done(t, "API server %s, token issuer %s", env.Config.Host, env.IssuerURL)

	t = step(2, "MinIO as STS and S3, verifying the API server's tokens (the first run builds it: about 5 minutes)")
	minio, err := miniotest.Start(ctx, miniotest.Options{RepoRoot: root, IssuerURL: env.IssuerURL, CAData: env.Config.CAData})
	if err != nil {
		return err
	}
	defer minio.Stop()
	if err := waitForSTS(ctx, env.Client, minio); err != nil {
		return err
	}
	done(t, "MinIO at %s, role %s", minio.Endpoint, minio.RoleARN)

	t = step(3, "The stsbind operator (go build, then bin/stsbind against the local API server)")
	bin := filepath.Join(root, "bin", "stsbind")
	if out, err := exec.Command("go", "build", "-o", bin, root).CombinedOutput(); err != nil {
		return fmt.Errorf("building the operator: %v\n%s", err, out)
	}
	wio := env.WebhookInstallOptions
	operator := exec.CommandContext(ctx, bin,
		"--kubeconfig", kubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--default-region", region,
		"--default-provider", demoProvider,
		"--webhook-cert-mode", "cert-manager", // certificates from a directory: envtest's
		"--webhook-cert-dir", wio.LocalServingCertDir,
		"--webhook-host", wio.LocalServingHost,
		fmt.Sprintf("--webhook-port=%d", wio.LocalServingPort),
	)
	logPath := filepath.Join(root, "bin", "demo-operator.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	operator.Stdout, operator.Stderr = logFile, logFile
	operator.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := operator.Start(); err != nil {
		return err
	}
	defer func() { _ = operator.Process.Signal(os.Interrupt); _ = operator.Wait() }()
	done(t, "operator pid %d, log in %s", operator.Process.Pid, logPath)

	t = step(4, "The admin's ClusterSTSProvider for MinIO, then the sample binding from config/samples and its ServiceAccount")
	if out, err := kubectlRun(kubectl, kubeconfig, []byte(providerManifest(minio)), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubectl apply: %v\n%s", err, out)
	} else {
		fmt.Print(indent(out))
	}
	b, err := sampleBinding(filepath.Join(root, "config", "samples", "stsbind_v1alpha1_iamrolebinding.yaml"), minio)
	if err != nil {
		return err
	}
	c := env.Client
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: b.Spec.ServiceAccountName}}); err != nil {
		return err
	}
	manifest, _ := yaml.Marshal(b)
	if out, err := kubectlRun(kubectl, kubeconfig, manifest, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubectl apply: %v\n%s", err, out)
	} else {
		fmt.Print(indent(out))
	}
	if err := waitReady(ctx, c, b); err != nil {
		return fmt.Errorf("%w (operator log: %s)", err, logPath)
	}
	done(t, "binding Ready")
	out, _ := kubectlRun(kubectl, kubeconfig, nil, "get", "clusterstsprovider")
	fmt.Print(indent(out))
	out, _ = kubectlRun(kubectl, kubeconfig, nil, "get", "irb", "-n", namespace)
	fmt.Print(indent(out))
	out, _ = kubectlRun(kubectl, kubeconfig, nil, "get", "secret", b.SecretNameOrDefault(), "-n", namespace,
		"-o", `go-template={{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}`)
	fmt.Printf("      Secret %s keys (values stay in the cluster):\n%s", b.SecretNameOrDefault(), indent(out))

	t = step(5, "A pod of ServiceAccount %s: the webhook mounts the credentials", b.Spec.ServiceAccountName)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "app"},
		Spec: corev1.PodSpec{
			ServiceAccountName: b.Spec.ServiceAccountName,
			Containers:         []corev1.Container{{Name: "app", Image: "amazon/aws-cli", Args: []string{"s3", "ls"}}},
		},
	}
	if err := c.Create(ctx, pod); err != nil {
		return err
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		return err
	}
	for _, e := range pod.Spec.Containers[0].Env {
		fmt.Printf("      env   %s=%s\n", e.Name, e.Value)
	}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		fmt.Printf("      mount %s (read-only %v)\n", m.MountPath, m.ReadOnly)
	}
	done(t, "pod stored with the injection")

	t = step(6, "An S3 call with the injected credentials, run as the container would run it")
	var secret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: b.SecretNameOrDefault()}, &secret); err != nil {
		return err
	}
	view, err := podview.Materialize(pod, "app", map[string]*corev1.Secret{secret.Name: &secret})
	if err != nil {
		return err
	}
	defer view.Cleanup()
	result, err := s3Call(view, work, minio.Endpoint)
	if err != nil {
		return err
	}
	fmt.Print(indent(result))
	done(t, "S3 answered")

	fmt.Printf("\nstsbind demo is running. Try:\n  KUBECONFIG=%s %s get irb -A -o wide\n  KUBECONFIG=%s %s describe irb %s\nCtrl-C stops and cleans up.\n",
		kubeconfig, kubectl, kubeconfig, kubectl, b.Name)
	<-ctx.Done()
	fmt.Println("\nStopping.")
	return nil
}

// writeKubeconfig gives kubectl an admin user of the local API server.
func writeKubeconfig(env *testenv.Env, dir string) (path, kubectl string, err error) {
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", "", err
	}
	raw, err := user.KubeConfig()
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", "", err
	}
	assets, err := testenv.Assets()
	return path, filepath.Join(assets, "kubectl"), err
}

func kubectlRun(kubectl, kubeconfig string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// demoProvider is the ClusterSTSProvider the demo creates as the admin would.
const demoProvider = "minio"

// providerManifest is the demo's provider: MinIO's STS, the audience MinIO
// accepts, every namespace, MinIO's roles.
func providerManifest(minio *miniotest.Server) string {
	return fmt.Sprintf(`apiVersion: stsbind.dev/v1alpha1
kind: ClusterSTSProvider
metadata:
  name: %s
spec:
  endpoint: %s
  region: %s
  audience: sts.amazonaws.com
  namespaceSelector: {}
  allowedRoleArns:
  - arn:minio:iam:::role/*
`, demoProvider, minio.Endpoint, region)
}

// sampleBinding reads the sample and points it at MinIO's role and provider.
func sampleBinding(path string, minio *miniotest.Server) (*stsbindv1.IAMRoleBinding, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b stsbindv1.IAMRoleBinding
	if err := yaml.UnmarshalStrict(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b.Namespace = namespace
	b.Spec.RoleARN = minio.RoleARN
	b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: demoProvider}
	b.Spec.Region = region
	return &b, nil
}

func waitForSTS(ctx context.Context, c client.Client, minio *miniotest.Server) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "minio-probe"}}
	if err := c.Create(ctx, sa); err != nil {
		return err
	}
	defer func() { _ = c.Delete(context.Background(), sa) }()
	sts := stsclient.New(stsclient.Options{})
	var lastErr error
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: ptr.To[int64](600)}}
		if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
			return err
		}
		if _, lastErr = sts.AssumeRoleWithWebIdentity(ctx, stsclient.Request{
			Provider: stsclient.Provider{Name: "probe", Region: region, Endpoint: minio.Endpoint, Timeout: 5 * time.Second},
			RoleARN:  minio.RoleARN, SessionName: "probe", Token: tr.Status.Token, Duration: time.Hour,
		}); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("MinIO STS never accepted a token: %w", lastErr)
}

func waitReady(ctx context.Context, c client.Client, b *stsbindv1.IAMRoleBinding) error {
	var last *metav1.Condition
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		last = meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
		if last != nil && last.Status == metav1.ConditionTrue {
			return nil
		}
	}
	if last != nil {
		return fmt.Errorf("binding not Ready: %s: %s", last.Reason, last.Message)
	}
	return fmt.Errorf("binding has no Ready condition after 60s")
}

// s3Call creates a bucket and lists the buckets with the AWS CLI when
// Debian's is installed, else with a Go program using aws-sdk-go-v2.
func s3Call(view *podview.View, work, endpoint string) (string, error) {
	var cmd *exec.Cmd
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		mb := exec.Command("/usr/bin/aws", "--endpoint-url", endpoint, "s3", "mb", "s3://stsbind-demo")
		mb.Env = view.Environ(work)
		if out, err := mb.CombinedOutput(); err != nil && !strings.Contains(string(out), "BucketAlreadyOwnedByYou") {
			return "", fmt.Errorf("aws s3 mb: %v\n%s", err, out)
		}
		cmd = exec.Command("/usr/bin/aws", "--endpoint-url", endpoint, "s3", "ls")
		fmt.Printf("      $ aws --endpoint-url %s s3 ls\n", endpoint)
	} else {
		bin := filepath.Join(work, "s3client")
		if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(testenv.RepoRoot(), "e2e", "s3client")).CombinedOutput(); err != nil {
			return "", fmt.Errorf("building s3client: %v\n%s", err, out)
		}
		cmd = exec.Command(bin, "-endpoint", endpoint, "-bucket", "stsbind-demo", "-key", "hello.txt")
		fmt.Printf("      $ s3client (aws-sdk-go-v2) -endpoint %s\n", endpoint)
	}
	cmd.Env = view.Environ(work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("S3 call failed: %v\n%s", err, out)
	}
	return string(out), nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "      " + strings.Join(lines, "\n      ") + "\n"
}
