// Package clients is the client matrix: every AWS client reachable here
// (aws-sdk-go-v2, boto3 1.26 and 1.43, AWS CLI 2.9 and 1.45, the AWS SDK for
// JavaScript v3, PHP AsyncAws 1.18) in every injection mode, against the
// real operator (controller and webhook on envtest) with MinIO as STS and
// S3. Each cell makes a one-shot call and, for the SDKs, runs a long-running
// process across a rotation in which the old credentials stop working; the
// verdicts are README's "Which client in which mode" table.
//
// The clients run on the host with exactly what podview says kubelet would
// give the pod's app container (environment, Secret files at their mount
// paths); the controller's own refresh rotates the credentials, and the test
// writes the new Secret to the mounts as kubelet does.
package clients

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/operator"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/miniotest"
	"github.com/stsbind/stsbind/internal/testrig/stsfront"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
	"github.com/stsbind/stsbind/webhook"
)

const (
	region            = "us-east-1"
	provider          = "front"
	operatorNamespace = "stsbind-system"
)

var (
	env   *testenv.Env
	k8s   client.Client
	minio *miniotest.Server
	front *stsfront.Front
	// sidecarPort is where the webhook tells Endpoint-mode pods to find
	// their sidecar; chosen free at start, since tests share the loopback.
	sidecarPort int32
	bin         string // built Go programs: s3client, credentials-server
	logs        = &testenv.SyncBuffer{}
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client matrix setup:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintln(os.Stderr, "operator log:\n"+logs.String())
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	// The modes' timelines are mostly waiting (for the rotation, the cutoff,
	// the writers' rounds): they all run at once, whatever the core count
	// makes the default, unless -parallel says otherwise.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", strconv.Itoa(max(len(modes), runtime.GOMAXPROCS(0)))); err != nil {
			return 0, err
		}
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	var err error
	if bin, err = os.MkdirTemp("", "stsbind-clients-bin-"); err != nil {
		return 0, err
	}
	defer os.RemoveAll(bin)
	for name, pkg := range map[string]string{"s3client": "../s3client", "credentials-server": "../../cmd/credentials-server"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("building %s: %v\n%s", name, err, out)
		}
	}
	if env, err = testenv.Start(testenv.Options{OIDCIssuer: true, Webhook: true}); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	k8s = env.Client
	if minio, err = miniotest.Start(ctx, miniotest.Options{RepoRoot: testenv.RepoRoot(), IssuerURL: env.IssuerURL, CAData: env.Config.CAData}); err != nil {
		return 0, err
	}
	defer minio.Stop()
	if err := waitForMinIOSTS(ctx); err != nil {
		return 0, fmt.Errorf("%w\nminio output:\n%s", err, minio.Output())
	}
	if front, err = stsfront.Start("127.0.0.1", minio.Endpoint); err != nil {
		return 0, err
	}
	defer front.Close()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}},
		&stsbindv1.ClusterSTSProvider{
			ObjectMeta: metav1.ObjectMeta{Name: provider},
			Spec: stsbindv1.ClusterSTSProviderSpec{
				Region: region, Endpoint: front.URL, Audience: "sts.amazonaws.com",
				// WebIdentity pods get the shortest token kubelet projects.
				Identity:          &stsbindv1.ProviderIdentity{WebIdentity: &stsbindv1.WebIdentity{TokenExpirationSeconds: stsbindv1.MinTokenExpirationSeconds}},
				NamespaceSelector: &metav1.LabelSelector{},
				AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:minio:iam:::role/*"},
			},
		},
	} {
		if err := k8s.Create(ctx, o); err != nil {
			return 0, err
		}
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
	fmt.Printf("clients: control plane, MinIO and operator up in %s\n", time.Since(t0).Round(time.Millisecond))
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
		DefaultProvider:   provider,
		DefaultRegion:     region,
		OperatorNamespace: operatorNamespace,
		ClusterName:       "clients",
		// No rotator (no CertReady): envtest wrote the certificate files.
		Webhook: &operator.WebhookOptions{
			// Fail, not main's Ignore: a failed lookup denies the pod instead of admitting it uninjected.
			FailurePolicy: admissionregistrationv1.Fail,
			Sidecar:       webhook.SidecarOptions{Image: "stsbind:clients", Port: sidecarPort},
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

// waitForMinIOSTS exchanges a real ServiceAccount token until MinIO answers:
// it logs its role before its policies are loaded.
func waitForMinIOSTS(ctx context.Context) error {
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "clients-probe"}}); err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "clients-probe", Name: "probe"}}
	if err := k8s.Create(ctx, sa); err != nil {
		return err
	}
	sts := stsclient.New(stsclient.Options{})
	p := stsclient.Provider{Name: "probe", Region: region, Endpoint: minio.Endpoint, Timeout: 5 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: ptr.To[int64](600)}}
		if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
			return err
		}
		_, lastErr = sts.AssumeRoleWithWebIdentity(ctx, stsclient.Request{
			Provider: p, RoleARN: minio.RoleARN, SessionName: "probe", Token: tr.Status.Token, Duration: time.Hour,
		})
		if lastErr == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("MinIO STS never accepted a token: %w", lastErr)
}
