package webhook

import (
	"cmp"
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/policy"
)

// +kubebuilder:rbac:groups=stsbind.dev,resources=clusterstsproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// webIdentityTargets applies the providers' rules to the WebIdentity
// bindings that apply to the pod, as the controller does, at admission:
// a binding's Ready condition may lag behind its provider or its
// namespace's labels, and a tenant could write it. It returns the bindings
// without the refused ones (each refusal gets a Warning event with the
// refusal's reason) and the token of each permitted one. A pod without a
// WebIdentity binding costs nothing here.
func (d *PodDefaulter) webIdentityTargets(ctx context.Context, pod *corev1.Pod, ns string, bindings []stsbindv1.IAMRoleBinding) ([]stsbindv1.IAMRoleBinding, map[string]WebIdentityTarget, error) {
	sa := serviceAccountOf(pod)
	var targets map[string]WebIdentityTarget
	var refused map[string]bool
	var nsLabels map[string]string
	nsRead := false
	for i := range bindings {
		b := &bindings[i]
		if b.InjectionModeOrDefault() != stsbindv1.InjectionWebIdentity || !appliesTo(b, pod, sa) {
			continue
		}
		if !nsRead {
			var err error
			if nsLabels, err = d.namespaceLabels(ctx, ns); err != nil {
				return nil, nil, err
			}
			nsRead = true
		}
		t, no, err := d.webIdentityTarget(ctx, b, nsLabels)
		if err != nil {
			return nil, nil, err
		}
		if no != nil {
			if refused == nil {
				refused = map[string]bool{}
			}
			refused[b.Name] = true
			d.refusedWebIdentity(ctx, pod, ns, sa, b, no)
			continue
		}
		if targets == nil {
			targets = make(map[string]WebIdentityTarget, 1)
		}
		targets[b.Name] = t
	}
	if len(refused) == 0 {
		return bindings, targets, nil
	}
	kept := make([]stsbindv1.IAMRoleBinding, 0, len(bindings)-len(refused))
	for i := range bindings {
		if !refused[bindings[i].Name] {
			kept = append(kept, bindings[i])
		}
	}
	return kept, targets, nil
}

// webIdentityTarget is the token binding b's pods may get, or why they get none.
func (d *PodDefaulter) webIdentityTarget(ctx context.Context, b *stsbindv1.IAMRoleBinding, nsLabels map[string]string) (WebIdentityTarget, *policy.Refusal, error) {
	name := b.ProviderNameOrDefault(d.DefaultProvider)
	var p *stsbindv1.ClusterSTSProvider
	if name != "" {
		var err error
		if p, err = d.provider(ctx, name); err != nil {
			return WebIdentityTarget{}, nil, err
		}
	}
	t, no := decideWebIdentity(b, name, p, nsLabels, d.Options.DefaultRegion)
	return t, no, nil
}

// decideWebIdentity applies provider p (named name; nil when it does not
// exist) to WebIdentity binding b, whose namespace has labels nsLabels:
// the token its pods get, or why they get none. Everything in the token
// comes from the provider.
func decideWebIdentity(b *stsbindv1.IAMRoleBinding, name string, p *stsbindv1.ClusterSTSProvider, nsLabels map[string]string, defaultRegion string) (WebIdentityTarget, *policy.Refusal) {
	if name == "" {
		return WebIdentityTarget{}, &policy.Refusal{Reason: stsbindv1.ReasonProviderNotFound,
			Message: "the binding names no spec.providerRef and the controller has no --default-provider"}
	}
	if p == nil {
		return WebIdentityTarget{}, &policy.Refusal{Reason: stsbindv1.ReasonProviderNotFound,
			Message: fmt.Sprintf("ClusterSTSProvider %s not found", name)}
	}
	// The controller's TokenReview verdict reaches every replica through
	// the provider's status, which only the controller writes.
	if c := meta.FindStatusCondition(p.Status.Conditions, stsbindv1.ConditionReady); c != nil &&
		c.Status == metav1.ConditionFalse && c.Reason == stsbindv1.ReasonAudienceAcceptedByAPIServer {
		return WebIdentityTarget{}, &policy.Refusal{Reason: c.Reason, Message: c.Message}
	}
	session, _, err := b.Spec.Durations()
	if err != nil {
		return WebIdentityTarget{}, &policy.Refusal{Reason: stsbindv1.ReasonInvalidSpec, Message: err.Error()}
	}
	if no := policy.Permit(policy.Input{
		Provider:        p,
		Namespace:       b.Namespace,
		NamespaceLabels: nsLabels,
		ServiceAccount:  b.Spec.ServiceAccountName,
		RoleARN:         b.Spec.RoleARN,
		ChainedRoleARN:  chainedRoleARN(b),
		HasPolicy:       b.Spec.SessionPolicy != "" || len(b.Spec.PolicyARNs) > 0,
		Session:         session,
		WebIdentity:     true,
	}); no != nil {
		return WebIdentityTarget{}, no
	}
	// The API server refuses these too (CEL); an object that slipped past
	// gets no token rather than a session the SDK cannot narrow.
	if b.Spec.RoleARN == "" || b.Spec.ChainedRole != nil || b.Spec.SessionPolicy != "" || len(b.Spec.PolicyARNs) > 0 {
		return WebIdentityTarget{}, &policy.Refusal{Reason: stsbindv1.ReasonInvalidSpec,
			Message: "injection mode WebIdentity takes a roleArn and no chainedRole, sessionPolicy or policyArns"}
	}
	return WebIdentityTarget{
		Audience:          p.Spec.AudienceOrDefault(),
		ExpirationSeconds: p.Spec.TokenExpirationSecondsOrDefault(),
		STSEndpoint:       cmp.Or(p.Spec.Endpoint, regionalSTSEndpoint(cmp.Or(p.Spec.Region, defaultRegion))),
	}, nil
}

func chainedRoleARN(b *stsbindv1.IAMRoleBinding) string {
	if b.Spec.ChainedRole == nil {
		return ""
	}
	return b.Spec.ChainedRole.RoleARN
}

// provider reads a ClusterSTSProvider from the cache, and from the API
// server when the cache has not seen it yet; nil when it does not exist.
func (d *PodDefaulter) provider(ctx context.Context, name string) (*stsbindv1.ClusterSTSProvider, error) {
	var p stsbindv1.ClusterSTSProvider
	err := d.Cache.Get(ctx, types.NamespacedName{Name: name}, &p)
	if apierrors.IsNotFound(err) {
		err = d.APIReader.Get(ctx, types.NamespacedName{Name: name}, &p)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading ClusterSTSProvider %s: %w", name, err)
	}
	return &p, nil
}

// namespaceLabels reads the labels the providers' namespaceSelectors match.
func (d *PodDefaulter) namespaceLabels(ctx context.Context, ns string) (map[string]string, error) {
	var m metav1.PartialObjectMetadata
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := d.Cache.Get(ctx, types.NamespacedName{Name: ns}, &m)
	if apierrors.IsNotFound(err) {
		err = d.APIReader.Get(ctx, types.NamespacedName{Name: ns}, &m)
	}
	if err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	return m.Labels, nil
}

// refusedWebIdentity records why the pod gets no token from binding b.
func (d *PodDefaulter) refusedWebIdentity(ctx context.Context, pod *corev1.Pod, ns, sa string, b *stsbindv1.IAMRoleBinding, no *policy.Refusal) {
	name := podName(pod)
	logf.FromContext(ctx).Info("Refused a WebIdentity IAMRoleBinding", "pod", name, "binding", b.Name, "reason", no.Reason)
	if d.Recorder == nil {
		return
	}
	related := &stsbindv1.IAMRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: stsbindv1.GroupVersion.String(), Kind: "IAMRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: b.Name, UID: b.UID},
	}
	d.Recorder.Eventf(serviceAccountRef(ns, sa), related, corev1.EventTypeWarning, no.Reason, "InjectCredentials",
		"Pod %s gets no web identity token from IAMRoleBinding %s: %s", name, b.Name, no.Message)
}

var regionalEndpoints sync.Map // region -> URL

// regionalSTSEndpoint is the AWS STS endpoint of region as the SDK resolves
// it (partitions included: sts.cn-north-1.amazonaws.com.cn), the one the
// controller would call for a provider without spec.endpoint.
func regionalSTSEndpoint(region string) string {
	if region == "" {
		return ""
	}
	if u, ok := regionalEndpoints.Load(region); ok {
		return u.(string)
	}
	e, err := sts.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(), sts.EndpointParameters{Region: aws.String(region)})
	if err != nil {
		return "" // the SDKs resolve it from the pod's region instead
	}
	u := e.URI.String()
	regionalEndpoints.Store(region, u)
	return u
}
