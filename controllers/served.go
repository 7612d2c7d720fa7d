package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// A spec change that fails (a sessionDuration above the role's maximum, a
// role the provider does not allow, a session policy STS refuses) must not
// take working pods down at the old credentials' expiry. Until the latest
// spec works, the Secret keeps serving, and refreshing, the credentials of
// the last spec that worked (status.servedSpec), as long as the provider
// still permits that spec: a revocation by the admin still ends them.

// reconcileBinding reconciles the latest spec and, while it fails, the last
// spec that worked.
func (r *IAMRoleBindingReconciler) reconcileBinding(ctx context.Context, b *stsbindv1.IAMRoleBinding) (ctrl.Result, error) {
	prev := previousSpec(b)
	if prev != nil && servingPrevious(b) && !r.Clock.Now().Before(b.Status.NextRefreshTime.Time) {
		// The previous generation's refresh is due and the latest spec
		// failed at its last try: refresh first, try the latest after
		// SlowRetry. Trying both now would spend two STS calls, and the
		// namespace's rate slot on the one that fails.
		old, oldResult, oldErr := r.reconcilePrevious(ctx, b, prev)
		if !ready(old) {
			// Both fail: the latest spec's fault stays what the user sees,
			// and it is tried again now.
			return r.reconcileSpec(ctx, b)
		}
		r.servePrevious(b, old)
		return ctrl.Result{RequeueAfter: minPositive(oldResult.RequeueAfter, r.SlowRetry)}, oldErr
	}
	result, err := r.reconcileSpec(ctx, b)
	if prev == nil || ready(b) {
		return result, err
	}
	old, oldResult, oldErr := r.reconcilePrevious(ctx, b, prev)
	if !ready(old) {
		return result, err
	}
	r.servePrevious(b, old)
	if err != nil && !errors.Is(err, reconcile.TerminalError(nil)) {
		// A transient fault of the latest spec: its backoff (at most
		// BackoffMax) comes before the previous generation's refresh.
		return ctrl.Result{}, err
	}
	if oldErr != nil {
		return ctrl.Result{}, oldErr
	}
	return ctrl.Result{RequeueAfter: minPositive(result.RequeueAfter, oldResult.RequeueAfter, r.SlowRetry)}, nil
}

// previousSpec is the last spec that worked, when the binding's latest spec
// is another generation's and the previous one may stand in for it: same
// ServiceAccount (the admission policy checked the latest one's) and same
// Secret.
func previousSpec(b *stsbindv1.IAMRoleBinding) *stsbindv1.IAMRoleBindingSpec {
	s := b.Status.ServedSpec
	if s == nil || b.Status.ServedGeneration == 0 || b.Status.ServedGeneration >= b.Generation ||
		s.ServiceAccountName != b.Spec.ServiceAccountName || s.SecretName != b.Spec.SecretName {
		return nil
	}
	return s
}

// servingPrevious tells whether the status says the Secret serves the
// previous generation because the current one failed.
func servingPrevious(b *stsbindv1.IAMRoleBinding) bool {
	c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == stsbindv1.ReasonPreviousGenerationServed &&
		c.ObservedGeneration == b.Generation && b.Status.NextRefreshTime != nil
}

// reconcilePrevious reconciles a copy of b that has the previous spec and
// generation; b is unchanged.
func (r *IAMRoleBindingReconciler) reconcilePrevious(ctx context.Context, b *stsbindv1.IAMRoleBinding, prev *stsbindv1.IAMRoleBindingSpec) (*stsbindv1.IAMRoleBinding, ctrl.Result, error) {
	old := b.DeepCopy()
	old.Spec = *prev.DeepCopy()
	old.Generation = b.Status.ServedGeneration
	result, err := r.reconcileSpec(ctx, old)
	return old, result, err
}

// servePrevious records in b that the Secret serves old's credentials. The
// UpToDate condition keeps the latest spec's fault.
func (r *IAMRoleBindingReconciler) servePrevious(b, old *stsbindv1.IAMRoleBinding) {
	s, o := &b.Status, &old.Status
	s.SecretName = o.SecretName // a WebIdentity generation names none
	s.Expiration, s.NextRefreshTime, s.LastRefreshTime = o.Expiration, o.NextRefreshTime, o.LastRefreshTime
	s.AssumedRoleARN, s.Subject, s.Account, s.CallerARN = o.AssumedRoleARN, o.Subject, o.Account, o.CallerARN
	s.ServedGeneration, s.ServedSpec = o.ServedGeneration, o.ServedSpec
	if c := meta.FindStatusCondition(o.Conditions, stsbindv1.ConditionIdentityVerified); c != nil {
		c := *c
		c.ObservedGeneration = b.Generation
		meta.SetStatusCondition(&s.Conditions, c)
	}
	fault := "The latest spec fails"
	if c := meta.FindStatusCondition(s.Conditions, stsbindv1.ConditionUpToDate); c != nil && c.Status == metav1.ConditionFalse {
		fault = fmt.Sprintf("Generation %d fails (%s, see condition UpToDate)", b.Generation, c.Reason)
	}
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type:   stsbindv1.ConditionReady,
		Status: metav1.ConditionTrue,
		Reason: stsbindv1.ReasonPreviousGenerationServed,
		Message: fmt.Sprintf("Credentials in Secret %s are generation %d's, valid until %s; next refresh at %s. %s: fix or revert the spec; until then the Secret keeps serving generation %d while the provider permits it",
			s.SecretName, o.ServedGeneration, s.Expiration.UTC().Format(time.RFC3339), s.NextRefreshTime.UTC().Format(time.RFC3339), fault, o.ServedGeneration),
		ObservedGeneration: b.Generation,
	})
}

func ready(b *stsbindv1.IAMRoleBinding) bool {
	return meta.IsStatusConditionTrue(b.Status.Conditions, stsbindv1.ConditionReady)
}

// minPositive is the smallest positive duration; zero when there is none.
func minPositive(ds ...time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		if d > 0 && (m == 0 || d < m) {
			m = d
		}
	}
	return m
}
