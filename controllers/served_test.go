package controllers_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// TestRefusedSpecChangeKeepsServingPreviousGeneration: raising
// sessionDuration above the role's MaxSessionDuration is refused by STS.
// The pods' credentials of the previous generation keep being refreshed
// (they would expire otherwise), status says which generation the Secret
// holds, and reverting the spec costs no STS call.
func TestRefusedSpecChangeKeepsServingPreviousGeneration(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	fake.SetMaxSession(f.role, time.Hour)
	// Short-lived credentials: the previous generation must be refreshed
	// while the latest one fails.
	fake.SetLifetime(f.role, 30*time.Second)
	b := f.binding("app", func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionDuration = "1h" })
	f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	before := f.secret("app")

	f.get(b, "app")
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "2h" })
	got := f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	t.Log(meta.FindStatusCondition(got.Status.Conditions, stsbindv1.ConditionReady).Message)
	if got.Status.ServedGeneration != 1 || got.Status.ServedSpec == nil || got.Status.ServedSpec.SessionDuration != "1h" {
		t.Errorf("servedGeneration %d, servedSpec %+v; want generation 1 with sessionDuration 1h", got.Status.ServedGeneration, got.Status.ServedSpec)
	}
	up := meta.FindStatusCondition(got.Status.Conditions, stsbindv1.ConditionUpToDate)
	if up == nil || up.Status != metav1.ConditionFalse || up.ObservedGeneration != got.Generation {
		t.Fatalf("UpToDate = %+v, want False at generation %d with the refusal", up, got.Generation)
	}
	t.Logf("UpToDate %s: %s", up.Reason, up.Message)

	// Two refreshes of generation 1's credentials while generation 2 fails.
	eventually(t, 60*time.Second, func() (bool, string) {
		n := 0
		for _, c := range fake.Calls(f.role) {
			if c.Error == "" && c.DurationSeconds == 3600 && c.Time.After(got.Status.LastRefreshTime.Time) {
				n++
			}
		}
		return n >= 2, "generation 1 was not refreshed twice"
	})
	refused := 0
	for _, c := range fake.Calls(f.role) {
		if c.DurationSeconds == 7200 {
			if c.Error != "ValidationError" {
				t.Errorf("a 2h request answered %q, want ValidationError", c.Error)
			}
			refused++
		}
	}
	if refused == 0 {
		t.Error("the latest spec was never tried")
	}
	after := f.secret("app")
	if after.Annotations[stsbindv1.AnnotationSpecHash] != before.Annotations[stsbindv1.AnnotationSpecHash] {
		t.Error("the Secret's spec hash changed: it no longer holds generation 1's credentials")
	}
	if after.Annotations[stsbindv1.AnnotationIssuedAt] == before.Annotations[stsbindv1.AnnotationIssuedAt] {
		t.Error("the Secret was not refreshed")
	}
	served := f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	if !served.Status.Expiration.After(time.Now()) {
		t.Errorf("status expiration %s is past", served.Status.Expiration)
	}
	warnings := 0
	for _, e := range f.events("app") {
		if e.Type == corev1.EventTypeWarning {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d Warning events for one refused change, want 1", warnings)
	}

	// Reverting to the spec that works: up to date again, from the Secret
	// it already holds.
	calls := fake.CallCount(f.role)
	f.get(b, "app")
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "1h" })
	reverted := f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if !meta.IsStatusConditionTrue(reverted.Status.Conditions, stsbindv1.ConditionUpToDate) || reverted.Status.ServedGeneration != reverted.Generation {
		t.Errorf("after the revert: UpToDate %v, servedGeneration %d of %d", meta.FindStatusCondition(reverted.Status.Conditions, stsbindv1.ConditionUpToDate), reverted.Status.ServedGeneration, reverted.Generation)
	}
	// A refresh may have fallen due meanwhile; the revert itself adds none.
	if n := fake.CallCount(f.role) - calls; n > 1 {
		t.Errorf("the revert cost %d STS calls", n)
	}
}

// TestPreviousGenerationEndsWithTheProvidersPermission: a binding moved to a
// role the provider does not allow keeps its previous role's credentials,
// until the admin stops allowing that role too: then nothing is served.
func TestPreviousGenerationEndsWithTheProvidersPermission(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.serviceAccount()
	fake.SetLifetime(f.role, 30*time.Second)
	allowed := stsbindv1.RoleARNPattern(f.role)
	name := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{allowed} })
	b := f.binding("app", useProvider(name))
	f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)

	f.get(b, "app")
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = f.role + "-admin" })
	got := f.waitReady("app", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	if up := meta.FindStatusCondition(got.Status.Conditions, stsbindv1.ConditionUpToDate); up == nil || up.Reason != stsbindv1.ReasonRoleNotAllowed {
		t.Errorf("UpToDate = %+v, want reason %s", up, stsbindv1.ReasonRoleNotAllowed)
	}
	if n := fake.CallCount(f.role + "-admin"); n != 0 {
		t.Errorf("%d STS calls for the role the provider does not allow", n)
	}

	// The admin revokes the previous role as well.
	var p stsbindv1.ClusterSTSProvider
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	p.Spec.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/nothing-here"}
	if err := k8s.Update(ctx, &p); err != nil {
		t.Fatal(err)
	}
	f.waitReady("app", metav1.ConditionFalse, stsbindv1.ReasonRoleNotAllowed)
	calls := fake.CallCount(f.role)
	// Past the 30 s credentials' refresh time: no refresh of the revoked role.
	eventually(t, 45*time.Second, func() (bool, string) {
		var cur stsbindv1.IAMRoleBinding
		if err := f.get(&cur, "app"); err != nil {
			return false, err.Error()
		}
		return cur.Status.Expiration != nil && time.Now().After(cur.Status.Expiration.Time), "the previous credentials have not expired yet"
	})
	if n := fake.CallCount(f.role) - calls; n != 0 {
		t.Errorf("%d STS calls for the revoked previous role", n)
	}
}
