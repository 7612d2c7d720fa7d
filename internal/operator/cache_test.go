package operator

import (
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func TestCacheOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		watch []string
		want  []string // DefaultNamespaces; nil: all namespaces
	}{
		{name: "no flag", watch: nil},
		// What main.go passes for an empty --watch-namespaces.
		{name: "empty flag split", watch: []string{""}},
		{name: "blanks only", watch: []string{" ", ""}},
		{name: "one", watch: []string{"team-a"}, want: []string{"team-a"}},
		{name: "trimmed, empty skipped, repeats merged", watch: []string{"team-a", " team-b ", "", "team-a"}, want: []string{"team-a", "team-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := CacheOptions(tc.watch)
			if got := slices.Sorted(maps.Keys(opts.DefaultNamespaces)); !slices.Equal(got, tc.want) {
				t.Errorf("DefaultNamespaces %v, want %v", got, tc.want)
			}
			if tc.want == nil && opts.DefaultNamespaces != nil {
				t.Errorf("DefaultNamespaces %v, want nil (all namespaces)", opts.DefaultNamespaces)
			}
			checkByObject(t, opts)
			checkDefaultTransform(t, opts)
		})
	}
}

// checkByObject checks, by what they do, that Secrets and Pods (and nothing
// else) have their own cache settings, and not each other's.
func checkByObject(t *testing.T, opts cache.Options) {
	t.Helper()
	var secret, pod *cache.ByObject
	for obj, cfg := range opts.ByObject {
		switch obj.(type) {
		case *corev1.Secret:
			secret = &cfg
		case *corev1.Pod:
			pod = &cfg
		default:
			t.Errorf("unexpected ByObject entry for %T", obj)
		}
	}
	if secret == nil || pod == nil {
		t.Fatalf("ByObject lacks Secrets or Pods: %v", opts.ByObject)
	}

	ours := labels.Set{stsbindv1.LabelManagedBy: stsbindv1.LabelManagedByValue}
	if secret.Label == nil || !secret.Label.Matches(ours) || secret.Label.Matches(labels.Set{}) {
		t.Errorf("Secret label selector %v: want only Secrets labelled %v", secret.Label, ours)
	}
	s, err := secret.Transform(&corev1.Secret{Data: map[string][]byte{"AWS_SECRET_ACCESS_KEY": []byte("key")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, kept := s.(*corev1.Secret).Data["AWS_SECRET_ACCESS_KEY"]; kept {
		t.Error("the Secret transform keeps credential values in the cache")
	}

	if pod.Field == nil {
		t.Fatal("no Pod field selector")
	}
	for phase, want := range map[corev1.PodPhase]bool{
		corev1.PodRunning: true, corev1.PodPending: true, corev1.PodSucceeded: false, corev1.PodFailed: false,
	} {
		if got := pod.Field.Matches(fields.Set{"status.phase": string(phase)}); got != want {
			t.Errorf("Pod field selector %v on phase %s: %v, want %v", pod.Field, phase, got, want)
		}
	}
	p, err := pod.Transform(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Env: []corev1.EnvVar{{Name: "PASSWORD", Value: "hunter2"}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.(*corev1.Pod).Spec.Containers); n != 0 {
		t.Errorf("the Pod transform keeps %d containers' specs in the cache", n)
	}
}

// checkDefaultTransform checks that every other object loses its
// managedFields.
func checkDefaultTransform(t *testing.T, opts cache.Options) {
	t.Helper()
	if opts.DefaultTransform == nil {
		t.Fatal("no DefaultTransform: managedFields stay in the cache")
	}
	b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{
		Name:          "b",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	out, err := opts.DefaultTransform(b)
	if err != nil {
		t.Fatal(err)
	}
	if mf := out.(*stsbindv1.IAMRoleBinding).ManagedFields; mf != nil {
		t.Errorf("DefaultTransform kept managedFields %v", mf)
	}
}
