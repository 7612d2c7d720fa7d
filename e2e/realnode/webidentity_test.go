package realnode

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/webhook"
)

// bridgeProvider creates a webIdentity ClusterSTSProvider whose endpoint is
// MinIO as pods reach it (the relay on the bridge): in WebIdentity mode the
// pods, not the controller, call STS. It serves the namespaces carrying the
// returned label, and MinIO's role only.
func bridgeProvider(t *testing.T) (string, map[string]string) {
	t.Helper()
	name := "minio-bridge-" + strings.ToLower(rand.String(5))
	label := map[string]string{"stsbind.dev/" + name: "true"}
	p := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region: realnodetest.Region, Endpoint: suite.S3URL, Audience: "sts.amazonaws.com",
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: label},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:minio:iam:::role/*"},
			Identity:          &stsbindv1.ProviderIdentity{WebIdentity: &stsbindv1.WebIdentity{TokenExpirationSeconds: 3600}},
		},
	}
	if err := suite.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.Client.Delete(context.Background(), p) })
	return name, label
}

func useBridge(provider string) func(*stsbindv1.IAMRoleBinding) {
	return func(b *stsbindv1.IAMRoleBinding) {
		b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: provider}
	}
}

// TestWebIdentityPodListsABucket: kubelet projects the ServiceAccount token
// the webhook asked for, the aws-sdk-go-v2 client in the pod (the
// distroless image, user 65532, read-only root) exchanges it at MinIO's STS
// on the bridge, named by AWS_ENDPOINT_URL_STS, and writes and lists a
// bucket. MinIO verified the token against the API server's keys (OIDC
// discovery); the operator made no STS call and wrote no Secret.
func TestWebIdentityPodListsABucket(t *testing.T) {
	t.Parallel()
	provider, label := bridgeProvider(t)
	ns := suite.Namespace(t, "rn-webid", label)
	b := suite.CreateBinding(t, ns, "webid", stsbindv1.InjectionWebIdentity, useBridge(provider))
	suite.WaitReady(t, b, operatorLog)

	key := "webidentity.txt"
	pod := suite.AppPod(ns, "app", images.S3ClientName, "webid-"+strings.ToLower(rand.String(6)), key)
	start := time.Now()
	if err := suite.Client.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	done, seen := suite.WaitPodDone(t, pod)
	took := time.Since(start)
	log := suite.PodLog(t, ns, pod.Name, "app")
	if done.Status.Phase != corev1.PodSucceeded || !strings.Contains(log, "object: "+key) {
		t.Fatalf("pod %s/%s: %s\n%s\nlog:\n%s\n%s", ns, pod.Name, done.Status.Phase, realnodetest.Describe(done), log, operatorLog())
	}
	app := done.Spec.Containers[0]
	for name, want := range map[string]string{
		webhook.EnvRoleARN:              suite.MinIO.RoleARN,
		webhook.EnvWebIdentityTokenFile: "/var/run/secrets/stsbind.dev/webid/token",
		webhook.EnvEndpointURLSTS:       suite.S3URL,
		webhook.EnvRoleSessionName:      ns + ".webid",
	} {
		if i := slices.IndexFunc(app.Env, func(e corev1.EnvVar) bool { return e.Name == name }); i < 0 || app.Env[i].Value != want {
			t.Errorf("app container %s: %+v, want %q", name, app.Env, want)
		}
	}
	if i := slices.IndexFunc(done.Spec.Volumes, func(v corev1.Volume) bool { return v.Projected != nil && v.Name == "stsbind-webid" }); i < 0 {
		t.Errorf("no projected token volume: %+v", done.Spec.Volumes)
	}
	if err := suite.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "webid"}, &corev1.Secret{}); err == nil {
		t.Error("a Secret exists for the WebIdentity binding")
	}
	t.Logf("WebIdentity pod: app seen started %s after create, Succeeded after %s; its log:\n%s",
		seen.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond), log)
}

// TestWebIdentityTenantAttacks: bindings the provider does not allow, a
// role outside allowedRoleArns or a namespace outside its selector, give
// the tenant's pods no projected token and no variables on the real node;
// the webhook's Warning event names the rule.
func TestWebIdentityTenantAttacks(t *testing.T) {
	t.Parallel()
	provider, label := bridgeProvider(t)
	tests := map[string]struct {
		labels map[string]string
		role   string
		reason string
	}{
		"role outside allowedRoleArns":   {labels: label, role: "arn:aws:iam::123456789012:role/admin", reason: stsbindv1.ReasonRoleNotAllowed},
		"namespace outside the selector": {labels: nil, reason: stsbindv1.ReasonNamespaceNotAllowed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := suite.Namespace(t, "rn-webid-attack", tc.labels)
			suite.CreateBinding(t, ns, "grab", stsbindv1.InjectionWebIdentity, useBridge(provider), func(b *stsbindv1.IAMRoleBinding) {
				if tc.role != "" {
					b.Spec.RoleARN = tc.role
				}
			})
			pod := suite.AppPod(ns, "app", images.S3ClientName, "webid-attack", "x.txt")
			if err := suite.Client.Create(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			for _, v := range pod.Spec.Volumes {
				if v.Projected != nil && strings.HasPrefix(v.Name, "stsbind-") {
					t.Errorf("the tenant's pod got a projected token volume: %+v", v)
				}
			}
			for _, c := range pod.Spec.Containers {
				for _, e := range c.Env {
					if strings.HasPrefix(e.Name, "AWS_") {
						t.Errorf("the tenant's pod got %s=%s", e.Name, e.Value)
					}
				}
			}
			waitWarning(t, ns, tc.reason)
		})
	}
}

// waitWarning waits for the webhook's Warning event with reason on the
// namespace's ServiceAccount app.
func waitWarning(t *testing.T, ns, reason string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var list eventsv1.EventList
		if err := suite.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && e.Regarding.Kind == "ServiceAccount" {
				t.Logf("Warning %s: %s", reason, e.Note)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Warning %s event in %s: %+v", reason, ns, list.Items)
		}
	}
}
