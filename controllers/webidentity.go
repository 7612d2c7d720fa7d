package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// reconcileWebIdentity handles a binding in injection mode WebIdentity: its
// pods get a projected token and exchange it at STS themselves, so the
// controller mints no token for STS, calls no STS and writes no Secret. It
// still applies the provider's rules, so the binding's Ready condition says
// whether the webhook will inject (the webhook applies the same rules
// itself), and it checks what it can without credentials: that the
// ServiceAccount exists and that the API server does not accept the
// provider's audience.
//
// A Secret left from an earlier mode is neither written nor deleted; it
// expires, and goes with the binding.
func (r *IAMRoleBindingReconciler) reconcileWebIdentity(ctx context.Context, b *stsbindv1.IAMRoleBinding) (ctrl.Result, error) {
	r.fair.release(types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
	// Nothing about issued credentials applies: there are none here.
	b.Status.SecretName = ""
	b.Status.Expiration, b.Status.LastRefreshTime, b.Status.NextRefreshTime = nil, nil, nil
	b.Status.AssumedRoleARN, b.Status.Subject, b.Status.Account, b.Status.CallerARN = "", "", "", ""
	// The webhook injects the current spec only: no earlier generation can
	// stand in for a WebIdentity one (reconcileBinding's previous spec), and
	// a WebIdentity generation stands in for none.
	b.Status.ServedGeneration, b.Status.ServedSpec = 0, nil
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type:               stsbindv1.ConditionIdentityVerified,
		Status:             metav1.ConditionUnknown,
		Reason:             stsbindv1.ReasonExchangedInPod,
		Message:            "WebIdentity mode: each pod's SDK obtains its own credentials from STS; the controller holds none to ask GetCallerIdentity with (run aws sts get-caller-identity in a pod)",
		ObservedGeneration: b.Generation,
	})

	provider, refused, err := r.admitBinding(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if refused != nil {
		r.setFailed(b, refused.Reason, refused.Message, "Authorize")
		return ctrl.Result{}, nil
	}

	var sa metav1.PartialObjectMetadata
	sa.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceAccount"))
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.Spec.ServiceAccountName}, &sa); {
	case apierrors.IsNotFound(err):
		// The ServiceAccount watch wakes the binding; the slow retry is a safety net.
		r.setFailed(b, stsbindv1.ReasonServiceAccountNotFound,
			fmt.Sprintf("ServiceAccount %s/%s not found; waiting for it to be created", b.Namespace, b.Spec.ServiceAccountName), "Authorize")
		return ctrl.Result{RequeueAfter: r.SlowRetry}, nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading ServiceAccount %s: %w", b.Spec.ServiceAccountName, err)
	}

	if f := r.checkAudience(ctx, b, provider); f != nil {
		r.setFailed(b, f.reason, f.msg, f.action)
		if f.retry == retrySlow {
			return ctrl.Result{RequeueAfter: r.SlowRetry}, nil
		}
		return ctrl.Result{}, f // backoff
	}

	was := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type:               stsbindv1.ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             stsbindv1.ReasonWebIdentityPermitted,
		Message:            webIdentityReadyMessage(b, provider, r.DefaultRegion),
		ObservedGeneration: b.Generation,
	})
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type:               stsbindv1.ConditionUpToDate,
		Status:             metav1.ConditionTrue,
		Reason:             stsbindv1.ReasonWebIdentityPermitted,
		Message:            fmt.Sprintf("The webhook injects generation %d", b.Generation),
		ObservedGeneration: b.Generation,
	})
	if was == nil || was.Status != metav1.ConditionTrue || was.Reason != stsbindv1.ReasonWebIdentityPermitted || was.ObservedGeneration != b.Generation {
		r.Recorder.Eventf(b, nil, corev1.EventTypeNormal, stsbindv1.ReasonWebIdentityPermitted, "Authorize",
			"ClusterSTSProvider %s permits role %s in WebIdentity mode; pods exchange their own tokens", provider.Name, b.Spec.RoleARN)
		logf.FromContext(ctx).Info("Permitted IAMRoleBinding in WebIdentity mode", "provider", provider.Name, "role", b.Spec.RoleARN)
	}
	// The audience verdict is kept for the guard's TTL: look again then,
	// so that a changed --api-audiences of the API server is noticed.
	return ctrl.Result{RequeueAfter: r.Audiences.ttl() + time.Second}, nil
}

// checkAudience makes sure the API server does not accept tokens of the
// provider's audience, which kubelet will project into the pods and their
// SDKs will send to STS. Without a kept verdict it mints one token of the
// binding's ServiceAccount for a TokenReview: that token goes only to the
// API server and is dropped.
func (r *IAMRoleBindingReconciler) checkAudience(ctx context.Context, b *stsbindv1.IAMRoleBinding, p *stsbindv1.ClusterSTSProvider) *failure {
	audience := p.Spec.AudienceOrDefault()
	accepted, known := r.Audiences.Known(audience, r.Clock.Now())
	if !known {
		token, err := r.mintToken(ctx, b, audience)
		if err != nil {
			return &failure{retry: retryBackoff, reason: stsbindv1.ReasonTokenRequestFailed, action: "MintToken",
				msg: fmt.Sprintf("minting a token of ServiceAccount %s to check the provider's audience at the API server: %v", b.Spec.ServiceAccountName, err)}
		}
		if accepted, err = r.Audiences.Check(ctx, audience, token, r.Clock.Now()); err != nil {
			return &failure{retry: retryBackoff, reason: stsbindv1.ReasonTokenReviewFailed, action: "Authorize", msg: err.Error()}
		}
	}
	if accepted {
		return &failure{retry: retrySlow, reason: stsbindv1.ReasonAudienceAcceptedByAPIServer, action: "Authorize", msg: audienceRefusal(p)}
	}
	return nil
}

// webIdentityReadyMessage says what the pods get and what was not checked.
func webIdentityReadyMessage(b *stsbindv1.IAMRoleBinding, p *stsbindv1.ClusterSTSProvider, defaultRegion string) string {
	endpoint := p.Spec.Endpoint
	if endpoint == "" {
		region := p.Spec.Region
		if region == "" {
			region = defaultRegion
		}
		endpoint = "the regional STS endpoint of " + region
	}
	return fmt.Sprintf("ClusterSTSProvider %s permits role %s for ServiceAccount %s/%s: its pods get a projected token (audience %q, %d s) "+
		"and exchange it at %s themselves. Not verified: the role's trust policy (no STS call is made here; the pod's first AssumeRoleWithWebIdentity tests it)",
		p.Name, b.Spec.RoleARN, b.Namespace, b.Spec.ServiceAccountName, p.Spec.AudienceOrDefault(), p.Spec.TokenExpirationSecondsOrDefault(), endpoint)
}
