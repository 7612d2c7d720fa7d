package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/policy"
)

// +kubebuilder:rbac:groups=stsbind.dev,resources=clusterstsproviders/status,verbs=get;update;patch

// ClusterSTSProviderReconciler keeps each provider's status: whether bindings
// may use it, and how many do.
type ClusterSTSProviderReconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
	// Audiences holds the API server's verdicts on provider audiences.
	Audiences *AudienceGuard
	// Forget drops what the process keeps for a deleted provider (its STS
	// client); optional.
	Forget func(provider string)
	// DefaultProvider is the provider of bindings without spec.providerRef.
	DefaultProvider string
	// SkipNameValidation lets a second manager in one process register the
	// controller again (restart tests).
	SkipNameValidation bool
}

// SetupWithManager registers the controller. index.SetupProviders must have
// run on the manager's field indexer.
func (r *ClusterSTSProviderReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	skip := r.SkipNameValidation
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusterstsprovider").
		For(&stsbindv1.ClusterSTSProvider{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Bindings come and go, change provider, or find the provider's
		// audience refused; the count and the condition follow.
		Watches(&stsbindv1.IAMRoleBinding{}, r.enqueueProviderOf(),
			builder.WithPredicates(predicate.Funcs{
				UpdateFunc: func(e event.UpdateEvent) bool {
					o, n := e.ObjectOld.(*stsbindv1.IAMRoleBinding), e.ObjectNew.(*stsbindv1.IAMRoleBinding)
					return o.ProviderNameOrDefault(r.DefaultProvider) != n.ProviderNameOrDefault(r.DefaultProvider) ||
						readyReason(o) != readyReason(n)
				},
			})).
		WithOptions(controllerOptions(skip)).
		Complete(r)
}

// providerStatusDelay gathers the binding changes of this long into one
// reconcile of their provider. Its count lists every binding of the
// provider: at 10,000 bindings coming Ready, one such reconcile per change
// took 40% of the controller's CPU.
const providerStatusDelay = 2 * time.Second

// enqueueProviderOf queues, providerStatusDelay later, the provider of a
// binding, and on an update the old provider as well: its count changes too.
func (r *ClusterSTSProviderReconciler) enqueueProviderOf() handler.EventHandler {
	add := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		name := o.(*stsbindv1.IAMRoleBinding).ProviderNameOrDefault(r.DefaultProvider)
		q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}, providerStatusDelay)
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.ObjectOld, q)
			add(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
	}
}

func readyReason(b *stsbindv1.IAMRoleBinding) string {
	if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// Reconcile brings one provider's status up to date.
func (r *ClusterSTSProviderReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p stsbindv1.ClusterSTSProvider
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) && r.Forget != nil {
			r.Forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var bindings stsbindv1.IAMRoleBindingList
	if err := r.Client.List(ctx, &bindings, client.MatchingFields{index.ProviderName: p.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the bindings of ClusterSTSProvider %s: %w", p.Name, err)
	}
	orig := p.DeepCopy()
	p.Status.ObservedGeneration = p.Generation
	p.Status.Bindings = int32(len(bindings.Items))
	status, reason, msg := providerCondition(&p, r.Audiences, r.Clock)
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
		Type: stsbindv1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: p.Generation,
	})
	if equality.Semantic.DeepEqual(orig.Status, p.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Patch(ctx, &p, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// providerCondition is the provider's Ready condition: what a binding
// would be told about the provider itself.
func providerCondition(p *stsbindv1.ClusterSTSProvider, g *AudienceGuard, clk clock.PassiveClock) (metav1.ConditionStatus, string, string) {
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
	if err != nil || p.Spec.NamespaceSelector == nil {
		return metav1.ConditionFalse, stsbindv1.ReasonInvalidSpec, "spec.namespaceSelector is not a usable label selector"
	}
	if _, _, err := p.Spec.SessionBounds(); err != nil {
		return metav1.ConditionFalse, stsbindv1.ReasonInvalidSpec, err.Error()
	}
	if g != nil {
		if accepted, ok := g.Known(p.Spec.AudienceOrDefault(), clk.Now()); ok && accepted {
			return metav1.ConditionFalse, stsbindv1.ReasonAudienceAcceptedByAPIServer, audienceRefusal(p)
		}
	}
	namespaces := sel.String()
	if namespaces == "" {
		namespaces = "every namespace"
	} else {
		namespaces = "namespaces matching " + namespaces
	}
	return metav1.ConditionTrue, stsbindv1.ReasonProviderAccepted,
		fmt.Sprintf("Serves %s with roles %s", namespaces, strings.Join(patternStrings(p.Spec.AllowedRoleARNs), ", "))
}

func patternStrings(ps []stsbindv1.RoleARNPattern) []string { return policy.PatternStrings(ps) }
