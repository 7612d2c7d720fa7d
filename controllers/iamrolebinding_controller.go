// Package controllers holds the credential controller: for every
// IAMRoleBinding it mints a ServiceAccount token, exchanges it at STS for
// temporary credentials, keeps them in a Secret and refreshes them before they
// expire.
package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/stsclient"
)

// TokenExpirationSeconds is the lifetime of the ServiceAccount tokens the
// controller mints: the API server's minimum. A token is used once, at once.
const TokenExpirationSeconds = 600

// STS issues temporary credentials and says whose they are.
type STS interface {
	Issue(ctx context.Context, req stsclient.Request) (stsclient.Result, error)
	CallerIdentity(ctx context.Context, p stsclient.Provider, c credentials.Credentials) (arn, account string, err error)
}

// IAMRoleBindingReconciler keeps each binding's Secret filled with valid
// credentials.
type IAMRoleBindingReconciler struct {
	Client client.Client
	// APIReader reads Secrets the cache cannot see: only Secrets labelled as
	// stsbind's are cached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	STS       STS
	Clock     clock.PassiveClock
	// Audiences refuses provider audiences that the API server accepts.
	Audiences *AudienceGuard

	// DefaultProvider is the ClusterSTSProvider of bindings without
	// spec.providerRef.
	DefaultProvider string
	// DefaultRegion applies to bindings without spec.region and providers
	// without spec.region.
	DefaultRegion string
	// OperatorNamespace holds the Secrets with providers' IAM user keys.
	OperatorNamespace string
	// ClusterName is the stsbind-cluster session tag; empty: no such tag.
	ClusterName string
	// SlowRetry is the wait after a fault that only a change outside the
	// binding can fix (IAM trust, a foreign Secret). Default 5m.
	SlowRetry time.Duration
	// MaxConcurrentReconciles bounds parallel reconciles. Default 16.
	MaxConcurrentReconciles int
	// BackoffBase and BackoffMax bound the retry delay after transient STS
	// faults. Default 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// SkipNameValidation lets a second manager in one process register the
	// controller again (restart tests).
	SkipNameValidation bool

	// written holds a digest of each Secret as this controller last wrote
	// it (types.NamespacedName -> writtenState).
	written sync.Map
	// fair paces each namespace's STS calls per provider.
	fair fairGate
}

// SetupWithManager registers the controller. index.Setup and
// index.SetupProviders must have run on the manager's field indexer.
func (r *IAMRoleBindingReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Audiences == nil {
		r.Audiences = &AudienceGuard{Client: r.Client}
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.SlowRetry == 0 {
		r.SlowRetry = 5 * time.Minute
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 16
	}
	if r.BackoffBase == 0 {
		r.BackoffBase = time.Second
	}
	if r.BackoffMax == 0 {
		r.BackoffMax = 5 * time.Minute
	}
	if err := setupMissedPods(mgr, &missedPodsReconciler{Client: r.Client, Recorder: r.Recorder, SkipNameValidation: r.SkipNameValidation}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("iamrolebinding").
		// Status writes do not bump the generation; without this predicate
		// every status write would reconcile (and maybe call STS) once more.
		For(&stsbindv1.IAMRoleBinding{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// The watch event of the controller's own Secret write would only
		// reconcile to "keep", and from a cache that may not hold the status
		// just written yet, so it would write that status twice (a conflict,
		// at the API server). Any change to what the controller owns in the
		// Secret (drift) makes it differ from what was written.
		Owns(&corev1.Secret{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return !e.IsInInitialList && !r.ownWrite(e.Object) },
			UpdateFunc: func(e event.UpdateEvent) bool { return !r.ownWrite(e.ObjectNew) },
			DeleteFunc: func(e event.DeleteEvent) bool {
				r.written.Delete(client.ObjectKeyFromObject(e.Object))
				return true
			},
		})).
		WatchesMetadata(&corev1.ServiceAccount{},
			handler.EnqueueRequestsFromMapFunc(r.bindingsForServiceAccount),
			builder.WithPredicates(predicate.Funcs{
				// A binding waits for its ServiceAccount to appear, and says
				// at once when it is deleted; nothing else about a
				// ServiceAccount changes the credentials. The bindings' own
				// initial list already enqueues every binding: at startup
				// this watch (and the Secret one) would only reconcile some
				// a second time.
				CreateFunc:  func(e event.CreateEvent) bool { return !e.IsInInitialList },
				UpdateFunc:  func(event.UpdateEvent) bool { return false },
				DeleteFunc:  func(event.DeleteEvent) bool { return true },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		// A provider that appears or changes may let its bindings proceed,
		// or stop them.
		Watches(&stsbindv1.ClusterSTSProvider{},
			handler.EnqueueRequestsFromMapFunc(r.bindingsForProvider),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc:  func(e event.CreateEvent) bool { return !e.IsInInitialList },
				UpdateFunc:  func(e event.UpdateEvent) bool { return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() },
				DeleteFunc:  func(event.DeleteEvent) bool { return true },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		// A namespace's labels decide which providers serve it.
		WatchesMetadata(&corev1.Namespace{},
			handler.EnqueueRequestsFromMapFunc(r.bindingsInNamespace),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc:  func(event.CreateEvent) bool { return false },
				UpdateFunc:  func(e event.UpdateEvent) bool { return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) },
				DeleteFunc:  func(event.DeleteEvent) bool { return false },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			RateLimiter:             newFailureRateLimiter(r.BackoffBase, r.BackoffMax),
			SkipNameValidation:      ptr.To(r.SkipNameValidation),
		}).
		Complete(r)
}

func (r *IAMRoleBindingReconciler) bindingsForServiceAccount(ctx context.Context, sa client.Object) []reconcile.Request {
	return r.requestsFor(ctx, "serviceAccount", sa.GetName(), client.InNamespace(sa.GetNamespace()),
		client.MatchingFields{index.ServiceAccountName: sa.GetName()})
}

func (r *IAMRoleBindingReconciler) bindingsForProvider(ctx context.Context, p client.Object) []reconcile.Request {
	return r.requestsFor(ctx, "provider", p.GetName(), client.MatchingFields{index.ProviderName: p.GetName()})
}

func (r *IAMRoleBindingReconciler) bindingsInNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	return r.requestsFor(ctx, "namespace", ns.GetName(), client.InNamespace(ns.GetName()))
}

func (r *IAMRoleBindingReconciler) requestsFor(ctx context.Context, kind, name string, opts ...client.ListOption) []reconcile.Request {
	return bindingRequests(ctx, r.Client, kind, name, opts...)
}

// bindingRequests lists the bindings opts select (from the cache) as
// requests; what caused the lookup (kind, name) goes into the error log.
func bindingRequests(ctx context.Context, c client.Reader, kind, name string, opts ...client.ListOption) []reconcile.Request {
	var list stsbindv1.IAMRoleBindingList
	if err := c.List(ctx, &list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list IAMRoleBindings", kind, name)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, b := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: b.Namespace, Name: b.Name}})
	}
	return reqs
}

// +kubebuilder:rbac:groups=stsbind.dev,resources=clusterstsproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=stsbind.dev,resources=iamrolebindings,verbs=get;list;watch
// +kubebuilder:rbac:groups=stsbind.dev,resources=iamrolebindings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=stsbind.dev,resources=iamrolebindings/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one binding's Secret and status up to date.
func (r *IAMRoleBindingReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b stsbindv1.IAMRoleBinding
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		if apierrors.IsNotFound(err) {
			r.fair.release(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		// The Secret's owner reference lets the garbage collector remove it.
		return ctrl.Result{}, nil
	}
	if wait := r.fair.pending(req.NamespacedName, r.Clock.Now()); wait > 0 {
		// Woken early (an event) while waiting for its namespace's turn:
		// nothing to read or decide before the slot.
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	orig := b.DeepCopy()
	result, err := r.reconcileBinding(ctx, &b)
	if !equality.Semantic.DeepEqual(orig.Status, b.Status) {
		// The lock makes a reconcile that read a stale binding from the cache
		// fail instead of replacing the conditions list (a merge patch
		// replaces lists whole) with what it saw; it runs again on fresh data.
		perr := r.Client.Status().Patch(ctx, &b, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		switch {
		case apierrors.IsConflict(perr):
			logf.FromContext(ctx).V(1).Info("IAMRoleBinding changed while reconciling; again on fresh data")
			return ctrl.Result{RequeueAfter: time.Second}, nil
		case perr != nil && !apierrors.IsNotFound(perr):
			return ctrl.Result{}, errors.Join(err, fmt.Errorf("writing status: %w", perr))
		}
	}
	return result, err
}

// reconcileSpec decides, maybe calls STS, writes the Secret and fills
// b.Status, all for b.Spec. It never deletes or blanks a Secret.
func (r *IAMRoleBindingReconciler) reconcileSpec(ctx context.Context, b *stsbindv1.IAMRoleBinding) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	now := r.Clock.Now()
	b.Status.ObservedGeneration = b.Generation
	b.Status.SecretName = b.SecretNameOrDefault()

	b.Status.Provider = b.ProviderNameOrDefault(r.DefaultProvider)
	if b.InjectionModeOrDefault() == stsbindv1.InjectionWebIdentity {
		return r.reconcileWebIdentity(ctx, b) // no token for STS, no Secret
	}

	provider, refused, err := r.admitBinding(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if refused != nil {
		// The provider, namespace or binding watches wake the binding when
		// one of them changes; nothing else can fix this. The Secret, if
		// any, keeps whatever it holds.
		r.setFailed(b, refused.Reason, refused.Message, "Authorize")
		return ctrl.Result{}, nil
	}

	spec, err := effective(b, provider, r.DefaultRegion, r.ClusterName)
	var invalid errInvalidSpec
	if errors.As(err, &invalid) {
		// A spec change reconciles again; nothing else can fix this.
		r.setFailed(b, invalid.reason, invalid.msg, "Validate")
		return ctrl.Result{}, reconcile.TerminalError(err)
	}

	secret, err := r.loadSecret(ctx, b)
	var conflict errSecretConflict
	if errors.As(err, &conflict) {
		r.setFailed(b, stsbindv1.ReasonSecretConflict, conflict.Error(), "WriteSecret")
		return ctrl.Result{RequeueAfter: r.SlowRetry}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}

	held := heldFromSecret(secret)
	specHash := spec.hash()
	decision := decideRefresh(refreshInput{
		SpecHash:      specHash,
		Held:          held,
		RefreshBefore: spec.refreshBefore,
		Session:       spec.session,
		UID:           b.UID,
		Now:           now,
	})
	if !decision.RefreshNow {
		r.fair.release(client.ObjectKeyFromObject(b))
		if gone, err := r.serviceAccountGone(ctx, b); err != nil || gone {
			return ctrl.Result{}, err
		}
		// From the Secret, not the status: a status write that lost a
		// conflict after the Secret was written left the old time there.
		b.Status.LastRefreshTime = ptr.To(metav1.NewTime(held.IssuedAt))
		r.setReady(b, held.Expiration, decision.RefreshAt)
		log.V(1).Info("Kept IAMRoleBinding credentials", "expiration", held.Expiration, "nextRefresh", decision.RefreshAt)
		return ctrl.Result{RequeueAfter: decision.RefreshAt.Sub(now)}, nil
	}

	// Credentials still valid for the current spec survive every failure below.
	stillValid := held != nil && held.Intact && held.SpecHash == specHash && now.Before(held.Expiration)

	limits := provider.Spec.RateLimit
	_, burst, nsQPS := limits.Limits()
	if wait := r.fair.admit(provider.Name, float64(nsQPS), max(int(burst)/2, 1), client.ObjectKeyFromObject(b), now); wait > 0 {
		log.V(1).Info("Waiting for the namespace's share of the provider's STS rate", "provider", provider.Name, "wait", wait)
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	res, f := r.issue(ctx, b, provider, spec)
	if f != nil {
		switch f.retry {
		case retryAfter:
			// Nothing was sent; a fresh token is minted then.
			log.V(1).Info("Waiting for the provider's STS rate limit", "provider", provider.Name, "wait", f.after)
			return ctrl.Result{RequeueAfter: f.after}, nil
		case retrySlow:
			r.setFailed(b, f.reason, f.msg, f.action)
			return ctrl.Result{RequeueAfter: r.SlowRetry}, nil
		}
		r.setRetrying(b, stillValid, held, f.reason, f.msg)
		return ctrl.Result{}, f
	}

	issuedAt := now.Truncate(time.Second)
	if msg := expiredOnArrival(r.Clock.Now(), res.Credentials.Expiration); msg != "" {
		// Backoff, not a one-second refresh loop; the held credentials stay.
		r.setRetrying(b, stillValid, held, stsbindv1.ReasonExpiredOnArrival, msg)
		return ctrl.Result{}, errors.New(msg)
	}
	if err := r.writeSecret(ctx, b, secret, res.Credentials, spec, issuedAt); err != nil {
		var conflict errSecretConflict
		if errors.As(err, &conflict) {
			r.setFailed(b, stsbindv1.ReasonSecretConflict, conflict.Error(), "WriteSecret")
			return ctrl.Result{RequeueAfter: r.SlowRetry}, nil
		}
		// A quota, a policy engine or an immutable Secret refused the write:
		// say so, and back off (each retry costs an STS call).
		r.setRetrying(b, stillValid, held, stsbindv1.ReasonSecretWriteFailed,
			fmt.Sprintf("STS issued credentials but writing Secret %s failed: %v", b.Status.SecretName, err))
		return ctrl.Result{}, err
	}
	next := refreshTime(issuedAt, schedulingExpiration(issuedAt, res.Credentials.Expiration, spec.session), spec.refreshBefore, b.UID)
	reason, note := "CredentialsIssued", "Issued credentials for %s, valid until %s"
	if held != nil {
		reason, note = "CredentialsRefreshed", "Refreshed credentials for %s ("+decision.Why+"), valid until %s"
	}
	r.Recorder.Eventf(b, nil, corev1.EventTypeNormal, reason, "IssueCredentials", note,
		cmp.Or(res.AssumedRoleARN, spec.RoleARN, "the provider's IAM user"), res.Credentials.Expiration.Format(time.RFC3339))
	log.Info("Wrote IAMRoleBinding credentials", "why", decision.Why, "secret", b.Status.SecretName,
		"expiration", res.Credentials.Expiration, "nextRefresh", next)

	b.Status.LastRefreshTime = ptr.To(metav1.NewTime(issuedAt))
	b.Status.AssumedRoleARN = res.AssumedRoleARN
	b.Status.Subject = res.Subject
	r.setReady(b, res.Credentials.Expiration, next)
	if decision.Why != dueRefresh || meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionIdentityVerified) == nil {
		// Whose credentials these are changes only with the spec: a routine
		// refresh costs one STS call, not two.
		r.verifyIdentity(ctx, b, provider, res.Credentials)
	}
	return ctrl.Result{RequeueAfter: max(next.Sub(r.Clock.Now()), time.Second)}, nil
}

// serviceAccountGone tells, from the cache, whether the binding's
// ServiceAccount was deleted while its credentials are still valid, and says
// so in the status: they are not refreshed, and the watch wakes the binding
// when it comes back.
func (r *IAMRoleBindingReconciler) serviceAccountGone(ctx context.Context, b *stsbindv1.IAMRoleBinding) (bool, error) {
	var sa metav1.PartialObjectMetadata
	sa.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceAccount"))
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.Spec.ServiceAccountName}, &sa)
	if !apierrors.IsNotFound(err) {
		if err != nil {
			return false, fmt.Errorf("reading ServiceAccount %s: %w", b.Spec.ServiceAccountName, err)
		}
		return false, nil
	}
	r.setFailed(b, stsbindv1.ReasonServiceAccountNotFound, fmt.Sprintf(
		"ServiceAccount %s/%s not found: it was deleted, so the credentials are not refreshed; recreate it or delete the binding",
		b.Namespace, b.Spec.ServiceAccountName), "MintToken")
	return true, nil
}

// mintToken asks the API server for a short-lived token of the binding's
// ServiceAccount. The token lives only in memory.
func (r *IAMRoleBindingReconciler) mintToken(ctx context.Context, b *stsbindv1.IAMRoleBinding, audience string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.Spec.ServiceAccountName}}
	tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		Audiences:         []string{audience},
		ExpirationSeconds: ptr.To[int64](TokenExpirationSeconds),
	}}
	if err := r.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

func controllerOptions(skipNameValidation bool) controller.Options {
	return controller.Options{SkipNameValidation: ptr.To(skipNameValidation)}
}
