// Package operator wires stsbind into a controller-runtime manager: the
// cache, the indexes, the controllers, the binding metrics, the pod webhook
// and the health checks. main.go and the test harnesses that run the
// operator in-process share it, so that the tests run what ships.
package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/drain"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/webhook"
)

// Options are what main.go reads from its flags; a harness sets its own.
// A zero field takes the controllers' default where they have one.
type Options struct {
	// DefaultProvider is the ClusterSTSProvider of bindings without
	// spec.providerRef (--default-provider; empty: such bindings are refused).
	DefaultProvider string
	// DefaultRegion applies to bindings and providers without spec.region
	// (--default-region).
	DefaultRegion string
	// OperatorNamespace holds the Secrets with providers' IAM user keys
	// (--operator-namespace).
	OperatorNamespace string
	// ClusterName is the stsbind-cluster session tag (--cluster-name; empty:
	// no such tag).
	ClusterName string
	// Namespaces limits the webhook to these namespaces (--watch-namespaces;
	// empty: all). Pass the list given to CacheOptions: the webhook should
	// inject where the controller issues.
	Namespaces []string
	// MaxConcurrentReconciles bounds the bindings reconciled in parallel
	// (--max-concurrent-reconciles; 0: the controller's default).
	MaxConcurrentReconciles int
	// RestartMinInterval is the least time between two restarts of one
	// workload (--restart-min-interval; 0: the controller's default).
	RestartMinInterval time.Duration
	// DisableRestarts turns restartOnRotation off
	// (--restart-on-rotation=false). It is a negative so that the zero
	// value is what ships.
	DisableRestarts bool
	// STS issues the credentials; nil: a client with default options.
	STS *stsclient.Client
	// Webhook configures the pod webhook; nil: no webhook (and the manager's
	// webhook server is never started).
	Webhook *WebhookOptions
	// SkipNameValidation lets a process register the controllers in a
	// second manager (tests).
	SkipNameValidation bool
}

// WebhookOptions configure the pod webhook.
type WebhookOptions struct {
	// FailurePolicy is what happens to a pod whose bindings cannot be
	// looked up: Ignore admits it, Fail denies it (--webhook-failure-policy).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// Sidecar configures the Endpoint-mode sidecar (--sidecar-*).
	Sidecar webhook.SidecarOptions
	// Draining, once set, makes the webhook close its connections (the
	// shutdown delay); nil: never.
	Draining *drain.Flag
	// CertReady, if not nil, holds the webhook back until it is closed: the
	// self-managed certificate rotator's channel, since the webhook server
	// needs the certificate files when it starts. Nil: the files are there
	// already (cert-manager, envtest).
	CertReady <-chan struct{}
}

// Setup registers the operator on mgr, which should have been created with
// CacheOptions: the cache indexes, the IAMRoleBinding, restart-on-rotation
// and ClusterSTSProvider controllers, the binding metrics, the pod webhook
// if o.Webhook is set, and the healthz and readyz checks. ctx bounds the
// index registration.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("registering cache indexes: %w", err)
	}
	if err := index.SetupProviders(ctx, mgr.GetFieldIndexer(), o.DefaultProvider); err != nil {
		return fmt.Errorf("registering cache indexes: %w", err)
	}
	sts := o.STS
	if sts == nil {
		sts = stsclient.New(stsclient.Options{})
	}
	// One guard for both controllers: the provider status shows the
	// verdicts the binding controller got.
	audiences := &controllers.AudienceGuard{Client: mgr.GetClient()}
	if err := (&controllers.IAMRoleBindingReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("stsbind"),
		STS:                     sts,
		Audiences:               audiences,
		DefaultProvider:         o.DefaultProvider,
		DefaultRegion:           o.DefaultRegion,
		OperatorNamespace:       o.OperatorNamespace,
		ClusterName:             o.ClusterName,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		SkipNameValidation:      o.SkipNameValidation,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the IAMRoleBinding controller: %w", err)
	}
	if err := (&controllers.RestartReconciler{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Recorder:           mgr.GetEventRecorder("stsbind"),
		MinInterval:        o.RestartMinInterval,
		Disabled:           o.DisableRestarts,
		SkipNameValidation: o.SkipNameValidation,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the restart-on-rotation controller: %w", err)
	}
	if err := (&controllers.ClusterSTSProviderReconciler{
		Client:             mgr.GetClient(),
		Audiences:          audiences,
		Forget:             sts.Forget,
		DefaultProvider:    o.DefaultProvider,
		SkipNameValidation: o.SkipNameValidation,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ClusterSTSProvider controller: %w", err)
	}
	if err := mgr.Add(&bindingMetrics{collector: controllers.BindingMetrics{Reader: mgr.GetCache()}}); err != nil {
		return fmt.Errorf("adding the binding metrics: %w", err)
	}
	webhookReady := healthz.Ping
	if o.Webhook != nil {
		var err error
		if webhookReady, err = setupWebhook(mgr, o); err != nil {
			return fmt.Errorf("setting up the pod webhook: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", webhookReady); err != nil {
		return err
	}
	// A replica whose caches have not synced would answer lookups from
	// an empty cache: not ready until they have.
	return mgr.AddReadyzCheck("caches", cachesSynced(mgr.GetCache()))
}

// setupWebhook registers the pod webhook; the checker reports it ready to
// serve.
func setupWebhook(mgr ctrl.Manager, o Options) (healthz.Checker, error) {
	w := o.Webhook
	d := &webhook.PodDefaulter{
		Cache:           mgr.GetCache(),
		APIReader:       mgr.GetAPIReader(),
		Recorder:        mgr.GetEventRecorder("stsbind-webhook"),
		FailurePolicy:   w.FailurePolicy,
		Namespaces:      namespaces(o.Namespaces),
		DefaultProvider: o.DefaultProvider,
		Draining:        w.Draining,
		Options:         webhook.Options{DefaultRegion: o.DefaultRegion, Sidecar: w.Sidecar},
	}
	if w.CertReady == nil {
		return mgr.GetWebhookServer().StartedChecker(), d.SetupWithManager(mgr)
	}
	return webhook.ReadyCheck(mgr, w.CertReady), d.SetupWhenReady(mgr, w.CertReady)
}

// bindingMetrics keeps the binding collector in the global metrics registry
// while its manager runs. Tests start several managers one after another in
// one process: registering at setup would panic (MustRegister) or leave the
// first manager's stopped cache behind the metrics (a sync.Once, or ignoring
// AlreadyRegisteredError). Two managers running at once still fail, loudly.
type bindingMetrics struct {
	collector controllers.BindingMetrics
}

// Start registers the collector and unregisters it when ctx ends.
func (b *bindingMetrics) Start(ctx context.Context) error {
	if err := metrics.Registry.Register(b.collector); err != nil {
		return fmt.Errorf("registering the binding metrics: %w", err)
	}
	<-ctx.Done()
	metrics.Registry.Unregister(b.collector)
	return nil
}

// NeedLeaderElection is false: every replica exports the bindings its cache
// holds, leader or not.
func (b *bindingMetrics) NeedLeaderElection() bool { return false }

// cachesSynced reports ready once every informer of the manager's cache has
// synced.
func cachesSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("the informer caches have not synced yet")
		}
		return nil
	}
}
