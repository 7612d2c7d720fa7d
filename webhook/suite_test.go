package webhook

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// The control plane of the integration tests: a real kube-apiserver that
// calls this package's webhook over TLS, as configured by config/webhook.
var (
	env *testenv.Env
	mgr ctrl.Manager
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	flag.Parse()
	if fuzzing() {
		// Every fuzz worker runs TestMain: a control plane each would swamp the machine.
		os.Exit(m.Run())
	}
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

// fuzzing reports whether this process runs `go test -fuzz` (coordinator or worker).
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// needEnv skips integration tests while fuzzing, the one time no control plane runs.
func needEnv(t testing.TB) {
	t.Helper()
	if env == nil && fuzzing() {
		t.Skip("no control plane while fuzzing")
	}
}

func runSuite(m *testing.M) (int, error) {
	var err error
	env, err = testenv.Start(testenv.Options{Webhook: true})
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()

	wio := env.WebhookInstallOptions
	mgr, err = ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// As in main.go (controllers.SecretCache): only Secrets labelled as
		// stsbind's are cached, so a foreign Secret takes the webhook's live read.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{stsbindv1.LabelManagedBy: stsbindv1.LabelManagedByValue})},
		}},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
		}),
	})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return 0, err
	}
	d := &PodDefaulter{
		Cache:         mgr.GetCache(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("stsbind-webhook"),
		FailurePolicy: admissionregistrationv1.Ignore,
		Options:       fixtureOptions,
	}
	if err := d.SetupWithManager(mgr); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	// Start the binding informer now, as a running operator has it, so that
	// the tests meet a cache that lags rather than one that syncs on demand.
	deadline, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	warm := func() error {
		return mgr.GetCache().List(deadline, &stsbindv1.IAMRoleBindingList{}, client.MatchingFields{index.ServiceAccountName: "warm-up"})
	}
	for warm() != nil || mgr.GetWebhookServer().StartedChecker()(&http.Request{}) != nil {
		select {
		case err := <-done:
			return 0, fmt.Errorf("manager stopped: %w", err)
		case <-deadline.Done():
			return 0, fmt.Errorf("cache or webhook server not ready: cache: %v, webhook: %w", warm(), deadline.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}

	code := m.Run()
	cancel()
	return code, <-done
}
