package controllers

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// setReady records valid credentials.
func (r *IAMRoleBindingReconciler) setReady(b *stsbindv1.IAMRoleBinding, expiration, next time.Time) {
	// Status times travel in whole seconds. Unrounded, the jittered refresh
	// time would differ from the one read back, and every reconcile that
	// keeps the credentials would write the same status again.
	expiration, next = expiration.Truncate(time.Second), next.Truncate(time.Second)
	b.Status.Expiration = ptr.To(metav1.NewTime(expiration))
	b.Status.NextRefreshTime = ptr.To(metav1.NewTime(next))
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type:               stsbindv1.ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             stsbindv1.ReasonCredentialsIssued,
		Message:            fmt.Sprintf("Credentials in Secret %s are valid until %s; next refresh at %s", b.Status.SecretName, expiration.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339)),
		ObservedGeneration: b.Generation,
	})
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type:               stsbindv1.ConditionUpToDate,
		Status:             metav1.ConditionTrue,
		Reason:             stsbindv1.ReasonCredentialsIssued,
		Message:            fmt.Sprintf("The Secret holds credentials for generation %d", b.Generation),
		ObservedGeneration: b.Generation,
	})
	b.Status.ServedGeneration = b.Generation
	b.Status.ServedSpec = b.Spec.DeepCopy()
}

// setFailed records a fault that stops the binding from getting credentials.
// A Warning event goes out when the condition changes, not on every retry.
func (r *IAMRoleBindingReconciler) setFailed(b *stsbindv1.IAMRoleBinding, reason, msg, action string) {
	b.Status.NextRefreshTime = nil
	if b.Status.Expiration != nil {
		msg += fmt.Sprintf("; the Secret keeps the previous credentials until %s", b.Status.Expiration.UTC().Format(time.RFC3339))
	}
	// UpToDate carries the fault also while a previous generation keeps
	// Ready True (servePrevious), so it says whether the fault is new.
	was := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionUpToDate)
	news := was == nil || was.Status != metav1.ConditionFalse || was.Reason != reason
	for _, t := range []string{stsbindv1.ConditionReady, stsbindv1.ConditionUpToDate} {
		meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
			Type:               t,
			Status:             metav1.ConditionFalse,
			Reason:             reason,
			Message:            msg,
			ObservedGeneration: b.Generation,
		})
	}
	// The message may change on every retry (times, request IDs); the event
	// goes out once per fault.
	if news {
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, reason, action, "%s", msg)
	}
}

// setRetrying records a transient fault. While the Secret holds valid
// credentials for this spec the binding stays Ready.
func (r *IAMRoleBindingReconciler) setRetrying(b *stsbindv1.IAMRoleBinding, stillValid bool, held *heldCredentials, reason, msg string) {
	if !stillValid {
		r.setFailed(b, reason, msg, "AssumeRoleWithWebIdentity")
		return
	}
	was := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
	news := was == nil || was.Reason != stsbindv1.ReasonRefreshRetrying || !strings.Contains(was.Message, "("+reason+")")
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type:               stsbindv1.ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             stsbindv1.ReasonRefreshRetrying,
		Message:            fmt.Sprintf("Credentials valid until %s; refresh failed (%s): %s", held.Expiration.UTC().Format(time.RFC3339), reason, msg),
		ObservedGeneration: b.Generation,
	})
	if news {
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, reason, "AssumeRoleWithWebIdentity", "%s", msg)
	}
}
