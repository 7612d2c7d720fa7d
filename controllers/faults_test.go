package controllers_test

import (
	"context"
	"maps"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// TestCredentialsExpiredOnArrival: STS answers with an Expiration already
// past (a skewed clock). The binding says so and backs off; nothing is
// written and no stream of events or Secret writes follows.
func TestCredentialsExpiredOnArrival(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	fake.SetLifetime(f.role, -time.Hour)
	f.binding("skewed", nil)
	f.waitReady("skewed", metav1.ConditionFalse, stsbindv1.ReasonExpiredOnArrival)
	f.waitEvent("skewed", corev1.EventTypeWarning, stsbindv1.ReasonExpiredOnArrival)
	// Wait until the controller has retried at least twice, then count.
	eventually(t, 30*time.Second, func() (bool, string) { return fake.CallCount(f.role) >= 3, "fewer than 3 STS calls" })
	if err := f.get(&corev1.Secret{}, "skewed"); err == nil {
		t.Error("expired credentials were written to a Secret")
	}
	warnings := 0
	for _, e := range f.events("skewed") {
		if e.Reason == stsbindv1.ReasonExpiredOnArrival {
			warnings++
		}
		if e.Type == corev1.EventTypeNormal {
			t.Errorf("a Normal event for expired credentials: %s %s", e.Reason, e.Note)
		}
	}
	if warnings != 1 {
		t.Errorf("%d ExpiredOnArrival events over %d STS calls, want one", warnings, fake.CallCount(f.role))
	}

	// STS's clock is fixed: the binding recovers on its next retry.
	fake.SetLifetime(f.role, 0)
	f.waitReady("skewed", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
}

// TestFarFutureExpirationIsRefreshedOnTime: an Expiration far past the
// requested session is scheduled as if it ended with the session.
func TestFarFutureExpirationIsRefreshedOnTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	fake.SetLifetime(f.role, 1000*time.Hour)
	f.binding("far", nil)
	b := f.waitReady("far", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	limit := b.Status.LastRefreshTime.Add(time.Hour)
	if b.Status.NextRefreshTime == nil || b.Status.NextRefreshTime.After(limit) {
		t.Errorf("next refresh %v, want before %s (issued-at plus the 1h session)", b.Status.NextRefreshTime, limit)
	}
}

// TestSecretWriteRefused: STS answers but the API server refuses the Secret
// (here a ValidatingAdmissionPolicy, as a policy engine would). The binding
// says so instead of staying silent, and recovers once the write works.
func TestSecretWriteRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.serviceAccount()
	label := map[string]string{"test.stsbind.dev/frozen-secrets": f.ns}
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "frozen-" + f.ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "Secrets are frozen in this namespace"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: label}},
		},
	}
	f.create(policy)
	f.create(binding)
	t.Cleanup(func() { _ = k8s.Delete(ctx, binding); _ = k8s.Delete(ctx, policy) })
	var ns corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: f.ns}, &ns); err != nil {
		t.Fatal(err)
	}
	maps.Copy(ns.Labels, label)
	if err := k8s.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	// The API server loads policies asynchronously: wait until it refuses.
	eventually(t, 30*time.Second, func() (bool, string) {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, GenerateName: "probe-"}}
		if err := k8s.Create(ctx, probe, client.DryRunAll); err == nil {
			return false, "the policy does not refuse Secrets yet"
		}
		return true, ""
	})

	f.binding("frozen", nil)
	b := f.waitReady("frozen", metav1.ConditionFalse, stsbindv1.ReasonSecretWriteFailed)
	t.Log(b.Status.Conditions[0].Message)
	f.waitEvent("frozen", corev1.EventTypeWarning, stsbindv1.ReasonSecretWriteFailed)

	if err := k8s.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	f.waitReady("frozen", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
}

// TestDeletedServiceAccountIsReportedAtOnce: the binding says at once, not
// at its next refresh, that its ServiceAccount is gone, and recovers without
// an STS call when it comes back while the credentials are still valid.
func TestDeletedServiceAccountIsReportedAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.serviceAccount()
	f.binding("app", nil)
	b := f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	calls := fake.CallCount(f.role)
	if err := k8s.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.sa}}); err != nil {
		t.Fatal(err)
	}
	// The next refresh is at least 36 minutes away: only the watch makes this.
	gone := f.waitReady("app", metav1.ConditionFalse, stsbindv1.ReasonServiceAccountNotFound)
	t.Log(meta.FindStatusCondition(gone.Status.Conditions, stsbindv1.ConditionReady).Message)
	if !gone.Status.Expiration.Equal(b.Status.Expiration) {
		t.Errorf("expiration changed from %s to %s", b.Status.Expiration, gone.Status.Expiration)
	}
	f.waitEvent("app", corev1.EventTypeWarning, stsbindv1.ReasonServiceAccountNotFound)
	f.serviceAccount()
	f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if n := fake.CallCount(f.role) - calls; n != 0 {
		t.Errorf("%d STS calls for credentials that stayed valid", n)
	}
}

// TestOrphanedSecretIsAdopted: a binding deleted with propagationPolicy
// Orphan leaves its Secret without an owner (the garbage collector removes the
// reference; envtest runs none, so the test does). A new binding of the same
// name takes it over instead of failing with SecretConflict for good. A
// Secret that looks like stsbind's but has another controller stays foreign.
func TestOrphanedSecretIsAdopted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.serviceAccount()
	old := f.binding("app", nil)
	f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if err := k8s.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		return apierrors.IsNotFound(f.get(&stsbindv1.IAMRoleBinding{}, "app")), "the binding is not gone yet"
	})
	s := f.secret("app")
	s.OwnerReferences = nil
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	successor := f.binding("app", nil)
	f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if got := f.secret("app"); !metav1.IsControlledBy(got, successor) {
		t.Errorf("the Secret's controller is %v, want the new binding %s", metav1.GetControllerOf(got), successor.UID)
	}

	// The same labels under another controller: not stsbind's to take.
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "owner"}}
	f.create(owner)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "other", Labels: map[string]string{
			stsbindv1.LabelManagedBy: stsbindv1.LabelManagedByValue, stsbindv1.LabelBinding: "other",
		}, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: owner.UID, Controller: ptr.To(true)}}},
		Type: stsbindv1.SecretType,
	}
	f.create(foreign)
	f.binding("other", nil)
	f.waitReady("other", metav1.ConditionFalse, stsbindv1.ReasonSecretConflict)
}
