package webhook

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// webIdentityProvider creates a webIdentity ClusterSTSProvider that serves
// the namespaces labelled with its own label, and returns it with that label.
func webIdentityProvider(t *testing.T, mutate func(*stsbindv1.ClusterSTSProviderSpec)) (*stsbindv1.ClusterSTSProvider, map[string]string) {
	t.Helper()
	name := "webid-" + strings.ToLower(rand.String(6))
	label := map[string]string{"stsbind.dev/" + name: "true"}
	p := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region:            "eu-west-1",
			Endpoint:          "http://10.88.0.1:9000",
			Audience:          "minio-" + name,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: label},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/k8s/${namespace}/*"},
			Identity:          &stsbindv1.ProviderIdentity{WebIdentity: &stsbindv1.WebIdentity{TokenExpirationSeconds: 3600}},
		},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	create(t, p)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	return p, label
}

func labelledNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "webid-" + strings.ToLower(rand.String(8)), Labels: labels}}
	create(t, ns)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	return ns.Name
}

func webIdentityBinding(ns, name, provider, role string) *stsbindv1.IAMRoleBinding {
	return &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: "app",
			ProviderRef:        &stsbindv1.ProviderReference{Name: provider},
			RoleARN:            role,
			Region:             "eu-central-1",
			Injection:          stsbindv1.Injection{Mode: stsbindv1.InjectionWebIdentity},
		},
	}
}

// TestWebhookWebIdentity: through the real API server (which also validates
// the projected volume the webhook adds), a pod created right after its
// WebIdentity binding gets the provider's token and the variables; a foreign
// Secret of the binding's name does not matter, as no Secret is mounted.
func TestWebhookWebIdentity(t *testing.T) {
	t.Parallel()
	p, label := webIdentityProvider(t, nil)
	ns := labelledNamespace(t, label)
	role := "arn:aws:iam::123456789012:role/k8s/" + ns + "/s3-reader"
	b := webIdentityBinding(ns, "s3-reader", p.Name, role)
	create(t, foreignSecret(ns, b.Name), b)
	stored := admitted(t, newPod(ns, "app", "app"))

	wantVolume := corev1.Volume{Name: "stsbind-s3-reader", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: p.Spec.Audience, ExpirationSeconds: ptr.To[int64](3600), Path: "token",
		}}},
		DefaultMode: ptr.To[int32](0o644), // the API server's default
	}}}
	if len(stored.Spec.Volumes) != 1 {
		t.Fatalf("stored pod has volumes %+v, want the projected token only", stored.Spec.Volumes)
	}
	if diff := cmp.Diff(wantVolume, stored.Spec.Volumes[0]); diff != "" {
		t.Errorf("projected token volume (-want +got):\n%s", diff)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "AWS_ROLE_ARN", Value: role},
		{Name: "AWS_WEB_IDENTITY_TOKEN_FILE", Value: "/var/run/secrets/stsbind.dev/s3-reader/token"},
		{Name: "AWS_ROLE_SESSION_NAME", Value: ns + ".s3-reader"},
		{Name: "AWS_ENDPOINT_URL_STS", Value: "http://10.88.0.1:9000"},
		{Name: "AWS_STS_REGIONAL_ENDPOINTS", Value: "regional"},
		{Name: "AWS_REGION", Value: "eu-central-1"},
		{Name: "AWS_DEFAULT_REGION", Value: "eu-central-1"},
	}
	wantMount := []corev1.VolumeMount{{Name: "stsbind-s3-reader", MountPath: "/var/run/secrets/stsbind.dev/s3-reader", ReadOnly: true}}
	for _, c := range append(stored.Spec.InitContainers, stored.Spec.Containers...) {
		if diff := cmp.Diff(wantEnv, c.Env); diff != "" {
			t.Errorf("container %s env (-want +got):\n%s", c.Name, diff)
		}
		if diff := cmp.Diff(wantMount, c.VolumeMounts); diff != "" {
			t.Errorf("container %s mounts (-want +got):\n%s", c.Name, diff)
		}
	}
}

// TestWebhookWebIdentityAttacks are a tenant's tries to get a projected
// token the provider does not allow. Each pod is stored without any token
// or variable, and a Warning event on its ServiceAccount names the rule.
func TestWebhookWebIdentityAttacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, label := webIdentityProvider(t, nil)
	keys, _ := webIdentityProvider(t, func(s *stsbindv1.ClusterSTSProviderSpec) {
		s.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "iam-user"}}
		s.NamespaceSelector = &metav1.LabelSelector{}
	})
	tests := map[string]struct {
		labels     map[string]string
		provider   string
		role       func(ns string) string
		forgeReady bool // the binding's status claims Ready, as a tenant with status rights could write
		wantReason string
	}{
		"role of another namespace": {labels: label, provider: p.Name, wantReason: stsbindv1.ReasonRoleNotAllowed,
			role: func(string) string { return "arn:aws:iam::123456789012:role/k8s/team-admin/admin" }},
		"role outside every pattern, status forged Ready": {labels: label, provider: p.Name, forgeReady: true, wantReason: stsbindv1.ReasonRoleNotAllowed,
			role: func(string) string { return "arn:aws:iam::123456789012:role/OrganizationAccountAccessRole" }},
		"namespace outside the selector": {labels: nil, provider: p.Name, wantReason: stsbindv1.ReasonNamespaceNotAllowed,
			role: func(ns string) string { return "arn:aws:iam::123456789012:role/k8s/" + ns + "/s3-reader" }},
		"an accessKeys provider": {labels: nil, provider: keys.Name, wantReason: stsbindv1.ReasonModeNotSupported,
			role: func(ns string) string { return "arn:aws:iam::123456789012:role/k8s/" + ns + "/s3-reader" }},
		"a provider that does not exist": {labels: label, provider: "no-such-provider", wantReason: stsbindv1.ReasonProviderNotFound,
			role: func(ns string) string { return "arn:aws:iam::123456789012:role/k8s/" + ns + "/s3-reader" }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := labelledNamespace(t, tc.labels)
			b := webIdentityBinding(ns, "grab", tc.provider, tc.role(ns))
			create(t, b)
			if tc.forgeReady {
				b.Status.Conditions = []metav1.Condition{{Type: stsbindv1.ConditionReady, Status: metav1.ConditionTrue,
					Reason: stsbindv1.ReasonWebIdentityPermitted, Message: "forged", LastTransitionTime: metav1.Now()}}
				b.Status.ObservedGeneration = b.Generation
				if err := env.Client.Status().Update(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			pod := newPod(ns, "app", "app")
			want := injectedPart(pod.DeepCopy())
			stored := admitted(t, pod)
			if diff := cmp.Diff(want, injectedPart(stored)); diff != "" {
				t.Errorf("the tenant's pod was injected (-want +got):\n%s", diff)
			}
			note := waitForWarning(t, ns, "app", tc.wantReason)
			if !strings.Contains(note, "IAMRoleBinding grab") {
				t.Errorf("event %q does not name the binding", note)
			}
		})
	}
}

// waitForWarning returns the note of the first Warning event with reason
// about ServiceAccount sa.
func waitForWarning(t *testing.T, ns, sa, reason string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && e.Regarding.Kind == "ServiceAccount" && e.Regarding.Name == sa {
				return e.Note
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Warning %s event on ServiceAccount %s; events: %+v", reason, sa, list.Items)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
