package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stsbind/stsbind/internal/testrig/miniotest"
	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// runEnvtest is the demo without a node: the operator on the host against
// envtest's API server, the pod stored and its files simulated.
func runEnvtest(ctx context.Context) error {
	root := testenv.RepoRoot()
	work, err := os.MkdirTemp("", "stsbind-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	s := &steps{total: 7}

	t := s.next("What the first run builds from the Go module proxy (cached in %s after that)", cacheDir())
	for _, a := range []asset{envtestAssets, minioAsset} {
		if err := ensure(ctx, root, a); err != nil {
			return err
		}
	}
	done(t, "all at hand")

	t = s.next("Control plane: kube-apiserver + etcd")
	env, err := testenv.Start(testenv.Options{OIDCIssuer: true, Webhook: true})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	c, err := envtestCluster(env, work)
	if err != nil {
		return err
	}
	done(t, "API server %s, token issuer %s", env.Config.Host, env.IssuerURL)

	t = s.next("MinIO as STS and S3, verifying the API server's tokens")
	minio, err := miniotest.Start(ctx, miniotest.Options{RepoRoot: root, IssuerURL: env.IssuerURL, CAData: env.Config.CAData})
	if err != nil {
		return err
	}
	defer minio.Stop()
	if err := waitForSTS(ctx, env.Client, minio.Endpoint, minio.RoleARN); err != nil {
		return err
	}
	done(t, "MinIO at %s, role %s", minio.Endpoint, minio.RoleARN)

	t = s.next("The stsbind operator (go build, then bin/stsbind against the local API server)")
	bin := filepath.Join(root, "bin", "stsbind")
	if out, err := exec.Command("go", "build", "-o", bin, root).CombinedOutput(); err != nil {
		return fmt.Errorf("building the operator: %v\n%s", err, out)
	}
	wio := env.WebhookInstallOptions
	operator := exec.CommandContext(ctx, bin,
		"--kubeconfig", c.kubeconfig,
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

	t = s.next("The admin's ClusterSTSProvider for MinIO, then the sample binding from config/samples and its ServiceAccount")
	b, err := applyBinding(ctx, c, root, minio.Endpoint, minio.RoleARN, func() string { return "operator log: " + logPath })
	if err != nil {
		return err
	}
	done(t, "binding Ready")

	t = s.next("A pod of ServiceAccount %s: the webhook mounts the credentials (stored, not run: no kubelet here)", b.Spec.ServiceAccountName)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "app"},
		Spec: corev1.PodSpec{
			ServiceAccountName: b.Spec.ServiceAccountName,
			Containers:         []corev1.Container{{Name: "app", Image: "amazon/aws-cli", Args: []string{"s3", "ls"}}},
		},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		return err
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		return err
	}
	printInjection(pod)
	done(t, "pod stored with the injection")

	t = s.next("An S3 call with the injected credentials, run on the host as the container would run it")
	var secret corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: b.SecretNameOrDefault()}, &secret); err != nil {
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

	fmt.Printf("\nstsbind demo is running (envtest). Look around:\n"+
		"  export KUBECONFIG=%s PATH=%s:$PATH\n"+
		"  kubectl get csp\n  kubectl get irb -A -o wide\n  kubectl describe irb %s\n"+
		"  less %s   # the operator's log\n"+
		"Ctrl-C stops and cleans up.\n", c.kubeconfig, filepath.Dir(c.kubectl), b.Name, logPath)
	<-ctx.Done()
	fmt.Println("\nStopping: the operator, MinIO, kube-apiserver and etcd.")
	return nil
}

// envtestCluster gives kubectl an admin user of the local API server.
func envtestCluster(env *testenv.Env, dir string) (cluster, error) {
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return cluster{}, err
	}
	raw, err := user.KubeConfig()
	if err != nil {
		return cluster{}, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return cluster{}, err
	}
	assets, err := testenv.Assets()
	return cluster{client: env.Client, kubectl: filepath.Join(assets, "kubectl"), kubeconfig: path}, err
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
