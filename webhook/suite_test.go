package webhook

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
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
// calls this package's webhook over TLS, as configured by config/webhook. It
// starts on first use (needEnv), so that the unit tests, the fixtures and the
// pure benchmarks (mutation, patch, handler) run without one.
var (
	env *testenv.Env
	mgr ctrl.Manager

	envOnce sync.Once
	envErr  error
	envStop func() error
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	flag.Parse()
	code := m.Run()
	if envStop != nil {
		if err := envStop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// fuzzing reports whether this process runs `go test -fuzz` (coordinator or worker).
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// needEnv starts the control plane unless it runs already; it skips
// integration tests while fuzzing, since every fuzz worker runs the package's
// tests and a control plane each would swamp the machine.
func needEnv(t testing.TB) {
	t.Helper()
	if fuzzing() {
		t.Skip("no control plane while fuzzing")
	}
	envOnce.Do(func() { envStop, envErr = startSuite() })
	if envErr != nil {
		t.Fatal(envErr)
	}
}

// startSuite starts envtest and a manager serving the webhook, and returns
// what stops them.
func startSuite() (stop func() error, err error) {
	env, err = testenv.Start(testenv.Options{Webhook: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = env.Stop()
		}
	}()

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
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	d := &PodDefaulter{
		Cache:         mgr.GetCache(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("stsbind-webhook"),
		FailurePolicy: admissionregistrationv1.Ignore,
		Options:       fixtureOptions,
	}
	if err := d.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	// Start the binding informer now, as a running operator has it, so that
	// the tests meet a cache that lags rather than one that syncs on demand.
	deadline, stopWait := context.WithTimeout(ctx, 30*time.Second)
	defer stopWait()
	warm := func() error {
		return mgr.GetCache().List(deadline, &stsbindv1.IAMRoleBindingList{}, client.MatchingFields{index.ServiceAccountName: "warm-up"})
	}
	for warm() != nil || mgr.GetWebhookServer().StartedChecker()(&http.Request{}) != nil {
		select {
		case err := <-done:
			return nil, fmt.Errorf("manager stopped: %w", err)
		case <-deadline.Done():
			return nil, fmt.Errorf("cache or webhook server not ready: cache: %v, webhook: %w", warm(), deadline.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return func() error {
		cancel()
		err := <-done
		return errors.Join(err, env.Stop())
	}, nil
}
