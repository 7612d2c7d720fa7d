package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/stsclient"
)

// Keys of the Secret that holds a provider's IAM user keys.
const (
	KeyAccessKeyID     = "AWS_ACCESS_KEY_ID"
	KeySecretAccessKey = "AWS_SECRET_ACCESS_KEY"
)

// retryKind says how a reconcile that could not issue credentials ends.
type retryKind int

const (
	// retrySlow: a fault outside the binding (IAM, the admin's provider);
	// Ready=False and a retry after SlowRetry.
	retrySlow retryKind = iota
	// retryBackoff: a passing fault; held credentials keep the binding
	// Ready, and the retry backs off exponentially.
	retryBackoff
	// retryAfter: nothing went wrong, nothing was sent (a rate limit); try
	// again after the given time, status unchanged.
	retryAfter
)

// failure is why credentials could not be issued.
type failure struct {
	retry  retryKind
	reason string
	msg    string
	action string
	after  time.Duration // retryAfter
}

func (f *failure) Error() string { return f.msg }

// issue obtains the binding's credentials as its provider says: a
// ServiceAccount token exchanged with AssumeRoleWithWebIdentity, or the
// provider's IAM user keys with AssumeRole, GetFederationToken or
// GetSessionToken; then the chained role, if any.
func (r *IAMRoleBindingReconciler) issue(ctx context.Context, b *stsbindv1.IAMRoleBinding, p *stsbindv1.ClusterSTSProvider, spec effectiveSpec) (stsclient.Result, *failure) {
	sp := stsProvider(p, r.DefaultRegion)
	req := stsclient.Request{
		Provider:    sp,
		RoleARN:     spec.RoleARN,
		SessionName: spec.SessionName,
		Duration:    spec.session,
	}
	if spec.ChainedRole == nil {
		// The session policy narrows what the pods get: the last session.
		req.Policy, req.PolicyARNs = spec.SessionPolicy, spec.PolicyARNs
	}
	if keys := accessKeysOf(p); keys != nil {
		signer, f := r.providerKeys(ctx, p, keys.SecretName)
		if f != nil {
			return stsclient.Result{}, f
		}
		req.Operation, req.Signer = stsclient.Operation(keys.Operation), signer
		if req.Operation == "" {
			req.Operation = stsclient.AssumeRole
		}
		if req.Operation == stsclient.GetFederationToken {
			req.SessionName = federatedName(b.Namespace, b.Name)
		}
		if req.Operation != stsclient.GetSessionToken {
			req.Tags = spec.Tags
		}
	} else {
		token, f := r.webIdentityToken(ctx, b, p, spec)
		if f != nil {
			return stsclient.Result{}, f
		}
		req.Operation, req.Token = stsclient.AssumeRoleWithWebIdentity, token
	}
	res, f := r.call(ctx, req)
	if f != nil || spec.ChainedRole == nil {
		return res, f
	}
	c := spec.ChainedRole
	first := res.Credentials
	return r.call(ctx, stsclient.Request{
		Provider: sp, Operation: stsclient.AssumeRole, Signer: &first,
		RoleARN: c.RoleARN, SessionName: spec.SessionName, Duration: spec.session,
		Policy: spec.SessionPolicy, PolicyARNs: spec.PolicyARNs,
		Tags: c.Tags, TransitiveTagKeys: c.TransitiveTagKeys, ExternalID: c.ExternalID, SourceIdentity: c.SourceIdentity,
	})
}

// call makes one STS call and sorts its failure.
func (r *IAMRoleBindingReconciler) call(ctx context.Context, req stsclient.Request) (stsclient.Result, *failure) {
	res, err := r.STS.Issue(ctx, req)
	if err == nil {
		return res, nil
	}
	op := string(req.Operation)
	var limited *stsclient.RateLimitedError
	if errors.As(err, &limited) {
		return res, &failure{retry: retryAfter, after: limited.RetryAfter, msg: err.Error()}
	}
	fault := classifySTSError(err)
	if fault.Kind == permanent {
		return res, &failure{retry: retrySlow, reason: fault.Reason, action: op,
			msg: fmt.Sprintf("STS refused %s for %s: %s", op, target(req), fault.Message)}
	}
	return res, &failure{retry: retryBackoff, reason: fault.Reason, action: op,
		msg: fmt.Sprintf("STS %s for %s failed, retrying: %s", op, target(req), fault.Message)}
}

func target(req stsclient.Request) string {
	switch {
	case req.RoleARN != "":
		return "role " + req.RoleARN
	case req.Operation == stsclient.GetFederationToken:
		return "federated user " + req.SessionName
	}
	return "the provider's IAM user"
}

// webIdentityToken mints the binding's ServiceAccount token and makes sure
// the API server itself would not accept it.
func (r *IAMRoleBindingReconciler) webIdentityToken(ctx context.Context, b *stsbindv1.IAMRoleBinding, p *stsbindv1.ClusterSTSProvider, spec effectiveSpec) (string, *failure) {
	token, err := r.mintToken(ctx, b, spec.Audience)
	if apierrors.IsNotFound(err) {
		// The ServiceAccount watch wakes the binding; the slow retry is a safety net.
		return "", &failure{retry: retrySlow, reason: stsbindv1.ReasonServiceAccountNotFound, action: "MintToken",
			msg: fmt.Sprintf("ServiceAccount %s/%s not found; waiting for it to be created", b.Namespace, spec.ServiceAccountName)}
	}
	if err != nil {
		return "", &failure{retry: retryBackoff, reason: stsbindv1.ReasonTokenRequestFailed, action: "MintToken",
			msg: fmt.Sprintf("minting a token for ServiceAccount %s: %v", spec.ServiceAccountName, err)}
	}
	accepted, err := r.Audiences.Check(ctx, spec.Audience, token, r.Clock.Now())
	if err != nil {
		return "", &failure{retry: retryBackoff, reason: stsbindv1.ReasonTokenReviewFailed, action: "Authorize", msg: err.Error()}
	}
	if accepted {
		return "", &failure{retry: retrySlow, reason: stsbindv1.ReasonAudienceAcceptedByAPIServer, action: "Authorize", msg: audienceRefusal(p)}
	}
	return token, nil
}

// providerKeys reads the provider's IAM user keys from the operator's own
// namespace, live, so a rotated key is used at once. They go only into the
// signature of the call.
func (r *IAMRoleBindingReconciler) providerKeys(ctx context.Context, p *stsbindv1.ClusterSTSProvider, name string) (*credentials.Credentials, *failure) {
	missing := func(why string) *failure {
		return &failure{retry: retrySlow, reason: stsbindv1.ReasonProviderKeysMissing, action: "ReadProviderKeys",
			msg: fmt.Sprintf("ClusterSTSProvider %s: Secret %s/%s %s; the admin must provide the IAM user's %s and %s",
				p.Name, r.OperatorNamespace, name, why, KeyAccessKeyID, KeySecretAccessKey)}
	}
	if r.OperatorNamespace == "" {
		return nil, missing("cannot be read: the controller does not know its own namespace (--operator-namespace)")
	}
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.OperatorNamespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, missing("does not exist")
		}
		return nil, &failure{retry: retryBackoff, reason: stsbindv1.ReasonProviderKeysMissing, action: "ReadProviderKeys",
			msg: fmt.Sprintf("reading the keys of ClusterSTSProvider %s: %v", p.Name, err)}
	}
	id, secret := strings.TrimSpace(string(s.Data[KeyAccessKeyID])), strings.TrimSpace(string(s.Data[KeySecretAccessKey]))
	if id == "" || secret == "" {
		return nil, missing("lacks " + KeyAccessKeyID + " or " + KeySecretAccessKey)
	}
	return &credentials.Credentials{AccessKeyID: id, SecretAccessKey: secret}, nil
}

func accessKeysOf(p *stsbindv1.ClusterSTSProvider) *stsbindv1.AccessKeys {
	if p.Spec.Identity == nil {
		return nil
	}
	return p.Spec.Identity.AccessKeys
}
