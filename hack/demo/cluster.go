package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/stsclient"
)

const (
	namespace = "default"
	region    = "us-east-1"
	// demoProvider is the ClusterSTSProvider the demo creates as the admin would.
	demoProvider = "minio"
)

// cluster is what both demos drive: a client and kubectl, as the admin.
type cluster struct {
	client              client.Client
	kubectl, kubeconfig string
}

func (c cluster) run(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// providerManifest is the demo's provider: MinIO's STS at endpoint (where
// the operator reaches it), the audience MinIO accepts, every namespace,
// MinIO's roles.
func providerManifest(endpoint string) string {
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
`, demoProvider, endpoint, region)
}

// applyBinding applies the provider as the admin, then the sample binding
// and its ServiceAccount, waits until the binding is Ready and shows them.
// diag explains a binding that never got Ready (the operator's log).
func applyBinding(ctx context.Context, c cluster, root, stsEndpoint, roleARN string, diag func() string) (*stsbindv1.IAMRoleBinding, error) {
	manifest := providerManifest(stsEndpoint)
	fmt.Print(indent("$ kubectl apply -f - <<EOF\n" + manifest + "EOF"))
	out, err := c.run([]byte(manifest), "apply", "-f", "-")
	if err != nil {
		return nil, err
	}
	fmt.Print(indent(out))
	b, err := sampleBinding(filepath.Join(root, "config", "samples", "stsbind_v1alpha1_iamrolebinding.yaml"), roleARN)
	if err != nil {
		return nil, err
	}
	if err := c.client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: b.Spec.ServiceAccountName}}); err != nil {
		return nil, err
	}
	fmt.Printf("      ServiceAccount %s/%s created\n", namespace, b.Spec.ServiceAccountName)
	raw, _ := yaml.Marshal(b)
	fmt.Printf("      $ kubectl apply -f config/samples/stsbind_v1alpha1_iamrolebinding.yaml   # roleArn %s, providerRef %s, region %s\n",
		roleARN, demoProvider, region)
	if out, err = c.run(raw, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	fmt.Print(indent(out))
	if err := waitReady(ctx, c.client, b); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, diag())
	}
	for _, args := range [][]string{{"get", "csp"}, {"get", "irb", "-n", namespace}} {
		out, _ := c.run(nil, args...)
		fmt.Print(indent(out))
	}
	out, _ = c.run(nil, "get", "secret", b.SecretNameOrDefault(), "-n", namespace,
		"-o", `go-template={{range $k, $v := .data}}{{$k}} {{end}}`)
	fmt.Printf("      Secret %s keys (the values stay in the cluster): %s\n", b.SecretNameOrDefault(), strings.TrimSpace(out))
	return b, nil
}

// sampleBinding reads the sample and points it at MinIO's role and provider.
func sampleBinding(path, roleARN string) (*stsbindv1.IAMRoleBinding, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b stsbindv1.IAMRoleBinding
	if err := yaml.UnmarshalStrict(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b.Namespace = namespace
	b.Spec.RoleARN = roleARN
	b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: demoProvider}
	b.Spec.Region = region
	return &b, nil
}

// waitForSTS exchanges a token of the cluster at MinIO until it answers:
// MinIO logs its role before its policies are loaded.
func waitForSTS(ctx context.Context, c client.Client, endpoint, roleARN string) error {
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
			Provider: stsclient.Provider{Name: "probe", Region: region, Endpoint: endpoint, Timeout: 5 * time.Second},
			RoleARN:  roleARN, SessionName: "probe", Token: tr.Status.Token, Duration: time.Hour,
		}); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("MinIO STS never accepted a token: %w", lastErr)
}

func waitReady(ctx context.Context, c client.Client, b *stsbindv1.IAMRoleBinding) error {
	var last *metav1.Condition
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
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
	return fmt.Errorf("binding has no Ready condition after 2m")
}

// printInjection shows what the webhook added to the pod's first container.
func printInjection(pod *corev1.Pod) {
	for _, e := range pod.Spec.Containers[0].Env {
		fmt.Printf("      env   %s=%s\n", e.Name, e.Value)
	}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		fmt.Printf("      mount %s (read-only %v)\n", m.MountPath, m.ReadOnly)
	}
}
