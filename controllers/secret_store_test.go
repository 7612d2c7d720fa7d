package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// TestWrittenState: the watch event of the controller's own write is told
// apart from drift by what the controller owns in the Secret, from the live
// object or the cached one, whatever its resourceVersion.
func TestWrittenState(t *testing.T) {
	t.Parallel()
	b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b", UID: "uid-b"},
		Spec: stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", RoleARN: "arn:aws:iam::123456789012:role/r"}}
	spec, err := effective(b, &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "aws"}}, "us-east-1", "")
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := credentials.Credentials{AccessKeyID: "ASIA1", SecretAccessKey: "s", SessionToken: "t", Expiration: issued.Add(time.Hour)}
	written := newSecret(b)
	renderSecret(written, b, c, spec, issued)
	written.OwnerReferences = []metav1.OwnerReference{{APIVersion: stsbindv1.GroupVersion.String(), Kind: "IAMRoleBinding",
		Name: b.Name, UID: b.UID, Controller: ptr.To(true)}}
	want := writtenState(written)

	tests := map[string]struct {
		edit      func(*corev1.Secret)
		wantOwned bool
	}{
		"as written":                     {edit: func(*corev1.Secret) {}, wantOwned: true},
		"another resourceVersion":        {edit: func(s *corev1.Secret) { s.ResourceVersion = "42" }, wantOwned: true},
		"someone else's label added":     {edit: func(s *corev1.Secret) { s.Labels["team"] = "a" }, wantOwned: true},
		"someone else's annotation":      {edit: func(s *corev1.Secret) { s.Annotations["note"] = "x" }, wantOwned: true},
		"data edited":                    {edit: func(s *corev1.Secret) { s.Data[credentials.KeyConfigFile] = []byte("[default]\n") }},
		"managed-by label removed":       {edit: func(s *corev1.Secret) { delete(s.Labels, stsbindv1.LabelManagedBy) }},
		"binding label changed":          {edit: func(s *corev1.Secret) { s.Labels[stsbindv1.LabelBinding] = "other" }},
		"expiration annotation edited":   {edit: func(s *corev1.Secret) { s.Annotations[stsbindv1.AnnotationExpiration] = "2030-01-01T00:00:00Z" }},
		"spec hash annotation removed":   {edit: func(s *corev1.Secret) { delete(s.Annotations, stsbindv1.AnnotationSpecHash) }},
		"type changed":                   {edit: func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }},
		"owner reference removed":        {edit: func(s *corev1.Secret) { s.OwnerReferences = nil }},
		"owned by a binding of the name": {edit: func(s *corev1.Secret) { s.OwnerReferences[0].UID = "uid-new" }},
		"newer credentials": {edit: func(s *corev1.Secret) {
			renderSecret(s, b, credentials.Credentials{AccessKeyID: "ASIA2", SecretAccessKey: "s2", SessionToken: "t2",
				Expiration: issued.Add(2 * time.Hour)}, spec, issued.Add(time.Hour))
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			live := written.DeepCopy()
			tc.edit(live)
			obj, err := SecretCache().Transform(live.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			for from, s := range map[string]*corev1.Secret{"live object": live, "cached object": obj.(*corev1.Secret)} {
				r := &IAMRoleBindingReconciler{}
				r.noteWrite(written)
				if got := writtenState(s) == want; got != tc.wantOwned {
					t.Errorf("from the %s: as written %v, want %v", from, got, tc.wantOwned)
				}
				if got := r.ownWrite(s); got != tc.wantOwned {
					t.Errorf("from the %s: ownWrite %v, want %v", from, got, tc.wantOwned)
				}
			}
		})
	}
	if (&IAMRoleBindingReconciler{}).ownWrite(written) {
		t.Error("a Secret this process never wrote counts as its own write")
	}
}

// TestMayHoldUncachedSecret: a cache miss is confirmed live only for a
// binding that may have a Secret without the controller's labels.
func TestMayHoldUncachedSecret(t *testing.T) {
	t.Parallel()
	now := metav1.NewTime(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	ready := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: stsbindv1.ConditionReady, Status: status, Reason: reason}}
	}
	tests := map[string]struct {
		status stsbindv1.IAMRoleBindingStatus
		want   bool
	}{
		"new":                            {},
		"waiting for its ServiceAccount": {status: stsbindv1.IAMRoleBindingStatus{ObservedGeneration: 1, Conditions: ready(metav1.ConditionFalse, stsbindv1.ReasonServiceAccountNotFound)}},
		"issued once":                    {status: stsbindv1.IAMRoleBindingStatus{LastRefreshTime: &now, Expiration: &now}, want: true},
		"expiration only":                {status: stsbindv1.IAMRoleBindingStatus{Expiration: &now}, want: true},
		"serving a previous generation":  {status: stsbindv1.IAMRoleBindingStatus{ServedGeneration: 1}, want: true},
		"refused a foreign Secret":       {status: stsbindv1.IAMRoleBindingStatus{Conditions: ready(metav1.ConditionFalse, stsbindv1.ReasonSecretConflict)}, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := &stsbindv1.IAMRoleBinding{Status: tc.status}
			if got := mayHoldUncachedSecret(b); got != tc.want {
				t.Errorf("mayHoldUncachedSecret = %v, want %v (ready %v)", got, tc.want, meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady))
			}
		})
	}
	r := &IAMRoleBindingReconciler{}
	key := types.NamespacedName{Namespace: "ns", Name: "b"}
	if r.wrote(key) {
		t.Error("wrote before any write")
	}
	r.noteWrite(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"}})
	if !r.wrote(key) {
		t.Error("a Secret this process wrote is not remembered")
	}
}
