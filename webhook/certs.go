package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// CertOptions locate the self-managed serving certificate.
type CertOptions struct {
	// Namespace is the operator's namespace, holding the Secret and the Service.
	Namespace string
	// SecretName is the Secret the CA and serving certificate are kept in. It
	// must exist (the chart creates it empty) and be mounted at CertDir.
	SecretName string
	// ServiceName is the webhook's Service; the certificate is for its DNS names.
	ServiceName string
	// WebhookConfigurationName is the MutatingWebhookConfiguration whose
	// caBundle is kept current.
	WebhookConfigurationName string
	// CertDir is where the Secret is mounted (the webhook server's cert dir).
	CertDir string
}

// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=list;watch;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=list;watch;update

// AddCertRotator makes the operator its own CA: open-policy-agent's
// cert-controller writes a CA and a serving certificate into the Secret,
// renews them before expiry and keeps the caBundle of the webhook
// configuration current. Every replica runs it (the Secret update is
// optimistic-locked), because every replica serves the webhook. The returned
// channel is closed once the certificate is mounted and the caBundle injected.
func AddCertRotator(mgr ctrl.Manager, o CertOptions) (<-chan struct{}, error) {
	if o.Namespace == "" {
		return nil, errors.New("self-managed webhook certificates need the operator's namespace (POD_NAMESPACE)")
	}
	ready := make(chan struct{})
	svc := fmt.Sprintf("%s.%s.svc", o.ServiceName, o.Namespace)
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:             types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
		CertDir:               o.CertDir,
		CAName:                "stsbind-webhook-ca",
		CAOrganization:        "stsbind",
		DNSName:               svc,
		ExtraDNSNames:         []string{svc + ".cluster.local"},
		IsReady:               ready,
		Webhooks:              []rotator.WebhookInfo{{Name: o.WebhookConfigurationName, Type: rotator.Mutating}},
		RequireLeaderElection: false,
		EnableReadinessCheck:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("adding the webhook certificate rotator: %w", err)
	}
	return ready, nil
}

// SetupWhenReady registers the webhook once ready is closed: the webhook
// server, started on registration, needs the certificate files to exist.
func (d *PodDefaulter) SetupWhenReady(mgr ctrl.Manager, ready <-chan struct{}) error {
	return mgr.Add(&afterReady{ready: ready, run: func() error { return d.SetupWithManager(mgr) }})
}

// ReadyCheck fails until ready is closed, then reports the webhook server's state.
func ReadyCheck(mgr ctrl.Manager, ready <-chan struct{}) healthz.Checker {
	return func(req *http.Request) error {
		select {
		case <-ready:
			return mgr.GetWebhookServer().StartedChecker()(req)
		default:
			return errors.New("webhook certificate not ready")
		}
	}
}

// afterReady is a runnable of every replica, leader or not.
type afterReady struct {
	ready <-chan struct{}
	run   func() error
}

func (a *afterReady) Start(ctx context.Context) error {
	select {
	case <-a.ready:
		return a.run()
	case <-ctx.Done():
		return nil
	}
}

func (a *afterReady) NeedLeaderElection() bool { return false }
