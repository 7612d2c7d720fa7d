package webhook

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// TestCertRotatorFillsSecretAndCABundle runs the self-managed mode against the
// API server: the rotator fills the empty Secret, and once the files are
// "mounted" (written here, as kubelet would) it injects the CA into the
// webhook configuration and reports ready. It uses a configuration of its own
// so the one envtest serves through keeps its CA.
func TestCertRotatorFillsSecretAndCABundle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webhook-server-cert"}}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "rotator-test-" + ns},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "never.stsbind.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "webhook-service"}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			// Matches nothing: no namespace carries this label.
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"stsbind.dev/rotator-test": "never"}},
		}},
	}
	for _, o := range []client.Object{secret, mwc} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), mwc) })

	m, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:     env.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	ready, err := AddCertRotator(m, CertOptions{
		Namespace: ns, SecretName: secret.Name, ServiceName: "webhook-service",
		WebhookConfigurationName: mwc.Name, CertDir: certDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
			t.Fatal(err)
		}
		if len(secret.Data["tls.crt"]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotator never wrote the serving certificate")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(certDir, k), secret.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("manager stopped: %v", err)
	case <-time.After(time.Until(deadline)):
		t.Fatal("the rotator never reported ready")
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(mwc), mwc); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatal(err)
	}
	if got := mwc.Webhooks[0].ClientConfig.CABundle; !bytes.Equal(got, secret.Data["ca.crt"]) || len(got) == 0 {
		t.Errorf("caBundle (%d bytes) is not the Secret's ca.crt (%d bytes)", len(got), len(secret.Data["ca.crt"]))
	}
}
