// Package e2e proves stsbind against parts nobody here wrote: the Kubernetes
// API server as the token issuer, MinIO as an STS that verifies those tokens,
// and the AWS SDK for Go, the AWS CLI and boto3 consuming what the webhook
// mounted.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/operator"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/miniotest"
	"github.com/stsbind/stsbind/internal/testrig/moto"
	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
	"github.com/stsbind/stsbind/webhook"
)

const region = "us-east-1"

// sidecarPort is where the webhook tells Endpoint-mode pods to find their
// sidecar; chosen free at start, since the tests share the host's loopback.
var sidecarPort int32

var (
	env      *testenv.Env
	k8s      client.Client
	minio    *miniotest.Server
	motoSTS  *moto.Server
	s3client string // the built e2e/s3client program
	credsrv  string // the built Endpoint-mode sidecar
	logs     = &testenv.SyncBuffer{}
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintln(os.Stderr, "operator log:\n"+logs.String())
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(logs)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	t0 := time.Now()
	env, err = testenv.Start(testenv.Options{OIDCIssuer: true, Webhook: true})
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	k8s = env.Client
	fmt.Printf("e2e: control plane up in %s, issuer %s\n", time.Since(t0).Round(time.Millisecond), env.IssuerURL)

	t0 = time.Now()
	minio, err = miniotest.Start(ctx, miniotest.Options{RepoRoot: testenv.RepoRoot(), IssuerURL: env.IssuerURL, CAData: env.Config.CAData})
	if err != nil {
		return 0, err
	}
	defer minio.Stop()
	if err := waitForMinIOSTS(ctx); err != nil {
		return 0, fmt.Errorf("%w\nminio output:\n%s", err, minio.Output())
	}
	fmt.Printf("e2e: MinIO STS answering in %s, role %s\n", time.Since(t0).Round(time.Millisecond), minio.RoleARN)
	if err := createProviders(ctx); err != nil {
		return 0, err
	}
	t0 = time.Now()
	if motoSTS, err = moto.Start(ctx); err != nil {
		return 0, err
	}
	defer motoSTS.Stop()
	if err := createProviderKeys(ctx); err != nil {
		return 0, err
	}
	fmt.Printf("e2e: moto_server answering in %s at %s\n", time.Since(t0).Round(time.Millisecond), motoSTS.Endpoint)

	bin, err := os.MkdirTemp("", "stsbind-e2e-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(bin)
	s3client = filepath.Join(bin, "s3client")
	if out, err := exec.Command("go", "build", "-o", s3client, "./s3client").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building s3client: %v\n%s", err, out)
	}
	credsrv = filepath.Join(bin, "credentials-server")
	if out, err := exec.Command("go", "build", "-o", credsrv, "../cmd/credentials-server").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building credentials-server: %v\n%s", err, out)
	}

	port, err := testenv.FreePort()
	if err != nil {
		return 0, err
	}
	sidecarPort = int32(port)
	stopped, err := startOperator(ctx)
	if err != nil {
		return 0, err
	}
	code := m.Run()
	cancel()
	<-stopped
	return code, nil
}

// startOperator runs the operator in one manager as main.go does
// (internal/operator), serving the webhook where envtest's configuration
// points.
func startOperator(ctx context.Context) (<-chan struct{}, error) {
	wio := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:        env.Scheme,
		Metrics:       metricsserver.Options{BindAddress: "0"},
		Cache:         operator.CacheOptions(nil),
		WebhookServer: crwebhook.NewServer(crwebhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir}),
	})
	if err != nil {
		return nil, err
	}
	if err := operator.Setup(ctx, mgr, operator.Options{
		DefaultProvider:   minioProvider,
		DefaultRegion:     region,
		OperatorNamespace: operatorNamespace,
		ClusterName:       "e2e",
		// No rotator (no CertReady): envtest wrote the certificate files.
		Webhook: &operator.WebhookOptions{
			// Fail, not main's Ignore: a failed lookup denies the pod instead of admitting it uninjected.
			FailurePolicy: admissionregistrationv1.Fail,
			Sidecar:       webhook.SidecarOptions{Image: "stsbind:e2e", Port: sidecarPort},
		},
	}); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for mgr.GetWebhookServer().StartedChecker()(&http.Request{}) != nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("webhook server not serving after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return done, nil
}

// The ClusterSTSProviders of the e2e tests: MinIO as the admin would set it
// up, and a copy whose audience MinIO does not accept.
const (
	minioProvider         = "minio"
	wrongAudienceProvider = "minio-wrong-audience"
)

func minioSTS() stsclient.Provider {
	return stsclient.Provider{Name: "probe", Region: region, Endpoint: minio.Endpoint, Timeout: 5 * time.Second}
}

// createProviders creates the e2e tests' ClusterSTSProviders.
func createProviders(ctx context.Context) error {
	for name, audience := range map[string]string{minioProvider: "sts.amazonaws.com", wrongAudienceProvider: "not-minio"} {
		if err := k8s.Create(ctx, &stsbindv1.ClusterSTSProvider{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: stsbindv1.ClusterSTSProviderSpec{
				Region:            region,
				Endpoint:          minio.Endpoint,
				Audience:          audience,
				NamespaceSelector: &metav1.LabelSelector{},
				AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:minio:iam:::role/*"},
			},
		}); err != nil {
			return err
		}
	}
	return nil
}

// waitForMinIOSTS exchanges a real ServiceAccount token until MinIO answers:
// it logs its role before its policies are loaded.
func waitForMinIOSTS(ctx context.Context) error {
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-probe"}}); err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "e2e-probe", Name: "probe"}}
	if err := k8s.Create(ctx, sa); err != nil {
		return err
	}
	sts := stsclient.New(stsclient.Options{})
	deadline := time.Now().Add(90 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: ptr.To[int64](600)}}
		if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
			return err
		}
		_, lastErr = sts.AssumeRoleWithWebIdentity(ctx, stsclient.Request{
			Provider: minioSTS(), RoleARN: minio.RoleARN, SessionName: "probe", Token: tr.Status.Token, Duration: time.Hour,
		})
		if lastErr == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("MinIO STS never accepted a token: %w", lastErr)
}

// --- the tests ---------------------------------------------------------------

type fixture struct {
	t  *testing.T
	ns string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, ns: "e2e-" + rand.String(6)}
	f.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}})
	f.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "app"}})
	return f
}

func (f *fixture) create(o client.Object) {
	f.t.Helper()
	if err := k8s.Create(context.Background(), o); err != nil {
		f.t.Fatalf("creating %s: %v", o.GetName(), err)
	}
}

func (f *fixture) binding(name string, mutate func(*stsbindv1.IAMRoleBindingSpec)) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	b := &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: "app",
			RoleARN:            minio.RoleARN,
			Region:             region,
		},
	}
	if mutate != nil {
		mutate(&b.Spec)
	}
	f.create(b)
	return b
}

// pod creates a pod of ServiceAccount app (written out: envtest runs no
// ServiceAccount admission) and returns it as the API server stored it.
func (f *fixture) pod(name string) *corev1.Pod {
	f.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			Containers:         []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}
	f.create(p)
	var stored corev1.Pod
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), &stored); err != nil {
		f.t.Fatal(err)
	}
	return &stored
}

// injected creates a binding and, right after it with no wait, a pod of its
// ServiceAccount; once the binding is Ready it returns the stored pod, the
// binding, its Secret by name, and what the pod's app container sees.
func (f *fixture) injected(name string, mutate func(*stsbindv1.IAMRoleBindingSpec)) (*corev1.Pod, *stsbindv1.IAMRoleBinding, map[string]*corev1.Secret, *podview.View) {
	f.t.Helper()
	f.binding(name, mutate)
	pod := f.pod("app")
	b := f.waitReady(name, metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	secrets := map[string]*corev1.Secret{name: f.secret(name)}
	view, err := podview.Materialize(pod, "app", secrets)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(view.Cleanup)
	return pod, b, secrets, view
}

func (f *fixture) waitReady(name string, status metav1.ConditionStatus, reason string) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	var b stsbindv1.IAMRoleBinding
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &b); err != nil {
			f.t.Fatal(err)
		}
		c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
		if c != nil && c.Status == status && c.Reason == reason && c.ObservedGeneration == b.Generation {
			return &b
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("binding %s: want Ready=%s %s, have %+v", name, status, reason, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *fixture) secret(name string) *corev1.Secret {
	f.t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &s); err != nil {
		f.t.Fatal(err)
	}
	return &s
}

// runClient runs one consumer with exactly the container's environment.
func runClient(t *testing.T, view *podview.View, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = view.Environ(t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", name, err, out)
	}
	return string(out)
}

const boto3Script = `
import sys, boto3
endpoint, bucket, key = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint)
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.put_object(Bucket=bucket, Key=key, Body=b"written by boto3\n")
for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
    print("object:", o["Key"])
`

// TestFilesModeWithRealClients: the binding and the pod are created back to
// back; the pod comes out mounted, and the Go SDK, the AWS CLI and boto3 use
// the mount through credential_process against MinIO's S3.
func TestFilesModeWithRealClients(t *testing.T) {
	f := newFixture(t)
	name := "files-" + rand.String(5)
	t0 := time.Now()
	_, b, _, view := f.injected(name, nil)
	t.Logf("first Ready %s after the binding was created", time.Since(t0).Round(time.Millisecond))
	t.Logf("MinIO reported subject %q, assumed role %q", b.Status.Subject, b.Status.AssumedRoleARN)
	if got := view.Lookup("AWS_CONFIG_FILE"); got != "/var/run/secrets/stsbind.dev/"+name+"/config" {
		t.Fatalf("AWS_CONFIG_FILE = %q; pod env %v", got, view.Env)
	}
	for _, v := range view.Env {
		if strings.HasPrefix(v, "AWS_ACCESS_KEY_ID=") || strings.HasPrefix(v, "AWS_SHARED_CREDENTIALS_FILE=") {
			t.Fatalf("Files mode set %s", strings.SplitN(v, "=", 2)[0])
		}
	}
	bucket := "files-" + strings.ToLower(rand.String(6))

	out := runClient(t, view, "aws-sdk-go-v2", s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "go.txt")
	if !strings.Contains(out, "object: go.txt") {
		t.Errorf("Go SDK listing lacks its object:\n%s", out)
	}
	runClient(t, view, "aws cli", "/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "put-object",
		"--bucket", bucket, "--key", "cli.txt", "--body", "/etc/hostname")
	out = runClient(t, view, "aws cli", "/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "list-objects-v2",
		"--bucket", bucket, "--query", "Contents[].Key", "--output", "text")
	if !strings.Contains(out, "cli.txt") || !strings.Contains(out, "go.txt") {
		t.Errorf("AWS CLI listing = %q", out)
	}
	out = runClient(t, view, "boto3", "/usr/bin/python3", "-c", boto3Script, minio.Endpoint, bucket, "boto3.txt")
	for _, key := range []string{"go.txt", "cli.txt", "boto3.txt"} {
		if !strings.Contains(out, "object: "+key) {
			t.Errorf("boto3 listing lacks %s:\n%s", key, out)
		}
	}
}

// TestEnvModeWithRealClients: Env mode hands the keys over as variables.
func TestEnvModeWithRealClients(t *testing.T) {
	f := newFixture(t)
	name := "env-" + rand.String(5)
	_, _, _, view := f.injected(name, func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Mode = stsbindv1.InjectionEnv })
	if view.Lookup("AWS_ACCESS_KEY_ID") == "" || view.Lookup("AWS_SESSION_TOKEN") == "" {
		t.Fatalf("Env mode did not set the keys; pod env names: %v", envNames(view.Env))
	}
	bucket := "env-" + strings.ToLower(rand.String(6))
	runClient(t, view, "aws-sdk-go-v2", s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "go.txt")
	out := runClient(t, view, "aws cli", "/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "list-objects-v2",
		"--bucket", bucket, "--query", "Contents[].Key", "--output", "text")
	if !strings.Contains(out, "go.txt") {
		t.Errorf("AWS CLI listing = %q", out)
	}
	out = runClient(t, view, "boto3", "/usr/bin/python3", "-c", boto3Script, minio.Endpoint, bucket, "boto3.txt")
	if !strings.Contains(out, "object: boto3.txt") {
		t.Errorf("boto3 listing:\n%s", out)
	}
}

// TestEndpointModeWithRealClients: the webhook's sidecar, run exactly as the
// stored pod spec says (its command from the image is the built
// credentials-server), serves the app container, whose Go SDK, AWS CLI and
// boto3 reach it through the variables the webhook set.
func TestEndpointModeWithRealClients(t *testing.T) {
	f := newFixture(t)
	name := "endpoint-" + rand.String(5)
	pod, _, secrets, app := f.injected(name, func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Mode = stsbindv1.InjectionEndpoint })

	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != webhook.SidecarName {
		t.Fatalf("no sidecar in the stored pod: %+v", pod.Spec.InitContainers)
	}
	sc := pod.Spec.InitContainers[0]
	side, err := podview.Materialize(pod, sc.Name, secrets)
	if err != nil {
		t.Fatal(err)
	}
	defer side.Cleanup()
	fromImage := func(argv []string) []string {
		if argv[0] != "/credentials-server" {
			t.Fatalf("the sidecar runs %q, not the image's /credentials-server", argv[0])
		}
		return append([]string{credsrv}, argv[1:]...)
	}
	argv := fromImage(append(append([]string{}, sc.Command...), sc.Args...))
	sidecar := exec.Command(argv[0], argv[1:]...)
	sidecar.Env = side.Env
	var sidecarLog bytes.Buffer
	sidecar.Stderr = &sidecarLog
	if err := sidecar.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sidecar.Process.Kill(); _ = sidecar.Wait() }()
	probe := fromImage(sc.StartupProbe.Exec.Command)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := exec.Command(probe[0], probe[1:]...)
		if cmd.Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the startup probe never passed; sidecar log:\n%s", sidecarLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if app.Lookup("AWS_CONTAINER_AUTHORIZATION_TOKEN") != side.Lookup("STSBIND_AUTHORIZATION_TOKEN") || app.Lookup("AWS_CONFIG_FILE") != "" {
		t.Fatalf("app env does not pair with the sidecar: %v", envNames(app.Env))
	}
	bucket := "endpoint-" + strings.ToLower(rand.String(6))
	runClient(t, app, "aws-sdk-go-v2", s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "go.txt")
	runClient(t, app, "aws cli", "/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "put-object",
		"--bucket", bucket, "--key", "cli.txt", "--body", "/etc/hostname")
	out := runClient(t, app, "boto3", "/usr/bin/python3", "-c", boto3Script, minio.Endpoint, bucket, "boto3.txt")
	for _, key := range []string{"go.txt", "cli.txt", "boto3.txt"} {
		if !strings.Contains(out, "object: "+key) {
			t.Errorf("boto3 listing lacks %s:\n%s", key, out)
		}
	}
	if n := strings.Count(sidecarLog.String(), `"msg":"Served credentials"`); n < 3 {
		t.Errorf("the sidecar served %d requests, want one per client at least", n)
	}
}

func envNames(env []string) []string {
	var out []string
	for _, kv := range env {
		out = append(out, strings.SplitN(kv, "=", 2)[0])
	}
	return out
}

// TestRealIssuerRefusals: against the real issuer, a provider with the wrong
// audience and an unknown role are refused by MinIO with InvalidParameterValue; the reason
// names it, the message carries MinIO's text, and an existing Secret stays
// and keeps serving.
func TestRealIssuerRefusals(t *testing.T) {
	f := newFixture(t)
	f.binding("wrong-audience", func(s *stsbindv1.IAMRoleBindingSpec) {
		s.ProviderRef = &stsbindv1.ProviderReference{Name: wrongAudienceProvider}
	})
	b := f.waitReady("wrong-audience", metav1.ConditionFalse, "InvalidParameterValue")
	t.Logf("wrong audience: %s", b.Status.Conditions[0].Message)

	f.binding("unknown-role", func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "arn:minio:iam:::role/does-not-exist" })
	b = f.waitReady("unknown-role", metav1.ConditionFalse, "InvalidParameterValue")
	t.Logf("unknown role: %s", b.Status.Conditions[0].Message)
	if msg := b.Status.Conditions[0].Message; !strings.Contains(msg, "STS refused AssumeRoleWithWebIdentity for role arn:minio:iam:::role/does-not-exist: ") ||
		!strings.Contains(msg, "is not defined") {
		t.Errorf("message lacks the operation, the role or MinIO's text: %q", msg)
	}

	// A working binding whose spec turns bad keeps its Secret untouched.
	f.binding("turns-bad", nil)
	b = f.waitReady("turns-bad", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	before := f.secret("turns-bad")
	b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: wrongAudienceProvider}
	if err := k8s.Update(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// The refused change keeps generation 1 serving; UpToDate names MinIO's refusal.
	b = f.waitReady("turns-bad", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionUpToDate); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "InvalidParameterValue" {
		t.Errorf("UpToDate = %+v, want False InvalidParameterValue", c)
	}
	if after := f.secret("turns-bad"); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Secret changed after a refused refresh")
	}
}

// TestSessionPolicySampleRestrictsAtMinIO: the session-policy sample, with its
// bucket renamed, reaches MinIO as the session policy — its credentials write
// to that bucket and are refused everywhere else.
func TestSessionPolicySampleRestrictsAtMinIO(t *testing.T) {
	f := newFixture(t)
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", "stsbind_v1alpha1_iamrolebinding_session_policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sample stsbindv1.IAMRoleBinding
	if err := yaml.UnmarshalStrict(raw, &sample); err != nil {
		t.Fatal(err)
	}
	allowed := "reports-" + strings.ToLower(rand.String(6))
	other := "elsewhere-" + strings.ToLower(rand.String(6))
	policy := strings.ReplaceAll(sample.Spec.SessionPolicy, "example-reports", allowed)
	if policy == sample.Spec.SessionPolicy {
		t.Fatal("the sample no longer names the example-reports bucket")
	}
	// Both buckets exist; the root user makes them.
	root := &podview.View{Env: []string{"AWS_ACCESS_KEY_ID=" + minio.RootUser, "AWS_SECRET_ACCESS_KEY=" + minio.RootPassword, "AWS_REGION=" + region}}
	for _, bucket := range []string{allowed, other} {
		runClient(t, root, "aws cli (root)", "/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "create-bucket", "--bucket", bucket)
	}

	name := "policy-" + rand.String(5)
	_, _, _, view := f.injected(name, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionPolicy = policy })
	put := func(bucket string) (string, error) {
		cmd := exec.Command("/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "put-object", "--bucket", bucket, "--key", "report.txt", "--body", "/etc/hostname")
		cmd.Env = view.Environ(t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := put(allowed); err != nil {
		t.Errorf("writing to the policy's bucket failed: %v\n%s", err, out)
	}
	out, err := put(other)
	if err == nil || !strings.Contains(out, "AccessDenied") {
		t.Errorf("writing to another bucket: err %v, output %q; want AccessDenied", err, out)
	}
}
