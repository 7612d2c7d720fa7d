package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/stsclient"
)

// verifyIdentity asks STS whose the new credentials are and records the
// answer. STS-compatible servers without GetCallerIdentity (MinIO) leave the
// identity unverified; that is no failure.
func (r *IAMRoleBindingReconciler) verifyIdentity(ctx context.Context, b *stsbindv1.IAMRoleBinding, p *stsbindv1.ClusterSTSProvider, c credentials.Credentials) {
	cond := metav1.Condition{Type: stsbindv1.ConditionIdentityVerified, ObservedGeneration: b.Generation}
	arn, account, err := r.STS.CallerIdentity(ctx, stsProvider(p, r.DefaultRegion), c)
	if err != nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, stsbindv1.ReasonIdentityNotVerified
		cond.Message = "not verified: STS GetCallerIdentity did not answer (" + classifySTSError(err).Message + ")"
		b.Status.Account, b.Status.CallerARN = "", ""
	} else {
		cond.Status, cond.Reason = metav1.ConditionTrue, stsbindv1.ReasonIdentityVerified
		cond.Message = fmt.Sprintf("STS GetCallerIdentity: %s in account %s", arn, account)
		b.Status.Account, b.Status.CallerARN = account, arn
	}
	meta.SetStatusCondition(&b.Status.Conditions, cond)
}

// admitBinding finds the binding's provider and applies its rules. A refusal
// says why the binding may not use it; no token is minted for a refused
// binding.
func (r *IAMRoleBindingReconciler) admitBinding(ctx context.Context, b *stsbindv1.IAMRoleBinding) (*stsbindv1.ClusterSTSProvider, *refusal, error) {
	name := b.Status.Provider
	if name == "" {
		return nil, &refusal{Reason: stsbindv1.ReasonProviderNotFound,
			Message: "the binding names no spec.providerRef and the controller has no --default-provider"}, nil
	}
	var p stsbindv1.ClusterSTSProvider
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &refusal{Reason: stsbindv1.ReasonProviderNotFound,
				Message: fmt.Sprintf("ClusterSTSProvider %s not found; the binding proceeds as soon as it exists", name)}, nil
		}
		return nil, nil, fmt.Errorf("reading ClusterSTSProvider %s: %w", name, err)
	}
	if accepted, ok := r.Audiences.Known(p.Spec.AudienceOrDefault(), r.Clock.Now()); ok && accepted {
		return nil, &refusal{Reason: stsbindv1.ReasonAudienceAcceptedByAPIServer,
			Message: audienceRefusal(&p)}, nil
	}
	var ns metav1.PartialObjectMetadata
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Client.Get(ctx, types.NamespacedName{Name: b.Namespace}, &ns); err != nil {
		return nil, nil, fmt.Errorf("reading namespace %s: %w", b.Namespace, err)
	}
	session, _, err := b.Spec.Durations()
	if err != nil {
		return nil, &refusal{Reason: stsbindv1.ReasonInvalidSpec,
			Message: err.Error() + "; fix the binding"}, nil
	}
	return &p, permit(permitInput{
		Provider:        &p,
		Namespace:       b.Namespace,
		NamespaceLabels: ns.Labels,
		ServiceAccount:  b.Spec.ServiceAccountName,
		RoleARN:         b.Spec.RoleARN,
		ChainedRoleARN:  chainedRoleARN(b),
		HasPolicy:       b.Spec.SessionPolicy != "" || len(b.Spec.PolicyARNs) > 0,
		Session:         session,
		WebIdentity:     b.InjectionModeOrDefault() == stsbindv1.InjectionWebIdentity,
	}), nil
}

func chainedRoleARN(b *stsbindv1.IAMRoleBinding) string {
	if b.Spec.ChainedRole == nil {
		return ""
	}
	return b.Spec.ChainedRole.RoleARN
}

func audienceRefusal(p *stsbindv1.ClusterSTSProvider) string {
	return fmt.Sprintf("tokens with ClusterSTSProvider %s's audience %q authenticate at this cluster's API server; stsbind never sends such a token to STS: give the provider the audience of its OIDC provider on the IAM side",
		p.Name, p.Spec.AudienceOrDefault())
}

// stsProvider is the provider's STS settings with defaults applied.
func stsProvider(p *stsbindv1.ClusterSTSProvider, defaultRegion string) stsclient.Provider {
	qps, burst, _ := p.Spec.RateLimit.Limits()
	region := p.Spec.Region
	if region == "" {
		region = defaultRegion
	}
	return stsclient.Provider{
		Name: p.Name, Region: region, Endpoint: p.Spec.Endpoint,
		QPS: float64(qps), Burst: int(burst), Timeout: p.Spec.TimeoutOrDefault(),
	}
}
