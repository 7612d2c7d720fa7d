package webhook

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// TestWebhookEnvFromSources: through the real API server, a container whose
// envFrom ConfigMap or Secret sets a credential variable gets no AWS_*
// variable (env would win over envFrom and mix two sources), one whose
// envFrom sets the region keeps it, and sources that cannot give AWS_*
// names (a prefix, other keys, a missing optional one) change nothing.
func TestWebhookEnvFromSources(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	objs := []client.Object{
		newBinding(ns, "s3-reader", "app", stsbindv1.InjectionFiles),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "profile"}, Data: map[string]string{"AWS_PROFILE": "legacy", "LOG_LEVEL": "info"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys"}, StringData: map[string]string{"ACCESS_KEY_ID": "AKIDEXAMPLE", "SECRET_ACCESS_KEY": "not-a-real-secret"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "region"}, Data: map[string]string{"AWS_REGION": "ap-south-1"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"}, Data: map[string]string{"LOG_LEVEL": "debug"}},
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cm := func(name, prefix string) corev1.EnvFromSource {
		return corev1.EnvFromSource{Prefix: prefix, ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "envfrom"},
		Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{
			{Name: "profile", Image: "app", EnvFrom: []corev1.EnvFromSource{cm("plain", ""), cm("profile", "")}},
			{Name: "keys", Image: "app", EnvFrom: []corev1.EnvFromSource{{Prefix: "AWS_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "keys"}}}}},
			{Name: "region", Image: "app", EnvFrom: []corev1.EnvFromSource{cm("region", "")}},
			{Name: "prefixed", Image: "app", EnvFrom: []corev1.EnvFromSource{cm("profile", "APP_")}},
			{Name: "missing", Image: "app", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "not-there"}, Optional: ptr.To(true)}}}},
		}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			got[c.Name] = append(got[c.Name], e.Name)
		}
	}
	files := []string{EnvConfigFile, EnvRegion, EnvDefaultRegion}
	want := map[string][]string{
		"region":   {EnvConfigFile},
		"prefixed": files,
		"missing":  files,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AWS_* variables per container of the stored pod (-want +got):\n%s", diff)
	}
	notes := pod.Annotations[AnnotationNotes]
	for _, s := range []string{"container profile sets AWS_PROFILE (from envFrom)", "container keys sets AWS_ACCESS_KEY_ID (from envFrom)"} {
		if !strings.Contains(notes, s) {
			t.Errorf("notes %q lack %q", notes, s)
		}
	}
	if strings.Contains(notes, "AKIDEXAMPLE") || strings.Contains(notes, "not-a-real-secret") {
		t.Errorf("notes carry a Secret value: %q", notes)
	}
}
