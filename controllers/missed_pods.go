package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
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
	"github.com/stsbind/stsbind/internal/index"
)

// maxNamedPods bounds the pod names in a condition message or an event.
const maxNamedPods = 10

// missedPodsReconciler reports, on each binding, the pods of its
// ServiceAccount that run without its credentials: pods the webhook never saw
// (failurePolicy Ignore during an outage, or a webhook not yet installed) and
// pods that started before the binding existed. It writes only
// status.podsWithoutCredentials and condition PodsInjected.
type missedPodsReconciler struct {
	Client             client.Client
	Recorder           events.EventRecorder
	SkipNameValidation bool

	// reported holds, per binding, the missed pods of the last Warning
	// event, so that one goes out when the set changes, not on every reconcile.
	reported sync.Map // types.NamespacedName -> string
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// setupMissedPods registers the reconciler; the manager's cache should hold
// pods as PodCache says (main.go), or it caches them whole.
func setupMissedPods(mgr ctrl.Manager, r *missedPodsReconciler) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, podServiceAccount, func(o client.Object) []string {
		return []string{podServiceAccountOf(o.(*corev1.Pod))}
	}); err != nil {
		return fmt.Errorf("indexing pods by ServiceAccount: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("missedpods").
		// A spec change, and the credential controller finishing with it.
		For(&stsbindv1.IAMRoleBinding{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, readySettled))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.bindingsForPod),
			builder.WithPredicates(predicate.Funcs{
				// The bindings' initial list already covers every pod.
				CreateFunc:  func(e event.CreateEvent) bool { return !e.IsInInitialList },
				UpdateFunc:  func(e event.UpdateEvent) bool { return podChanged(e.ObjectOld, e.ObjectNew) },
				DeleteFunc:  func(event.DeleteEvent) bool { return true },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, SkipNameValidation: ptr.To(r.SkipNameValidation)}).
		Complete(r)
}

// readySettled passes the status write in which the credential controller
// sets Ready for the binding's current generation.
var readySettled = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*stsbindv1.IAMRoleBinding)
		n, ok2 := e.ObjectNew.(*stsbindv1.IAMRoleBinding)
		return ok1 && ok2 && !readyCurrent(o) && readyCurrent(n)
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// readyCurrent reports whether the credential controller has written Ready
// for the binding's current generation: it is then done with the binding
// until the next refresh, and a status write of this controller does not
// race with its own (its write after a conflict would drop what it learnt
// from STS, such as IdentityVerified).
func readyCurrent(b *stsbindv1.IAMRoleBinding) bool {
	c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
	return c != nil && c.ObservedGeneration == b.Generation
}

// podChanged: a cached pod changes what it says about credentials only when it
// starts going away, finishes, or its opt-out annotation changes.
func podChanged(old, new client.Object) bool {
	o, ok1 := old.(*corev1.Pod)
	n, ok2 := new.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	return (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) ||
		o.Status.Phase != n.Status.Phase ||
		o.Annotations[stsbindv1.AnnotationInject] != n.Annotations[stsbindv1.AnnotationInject]
}

func (r *missedPodsReconciler) bindingsForPod(ctx context.Context, p client.Object) []reconcile.Request {
	return bindingRequests(ctx, r.Client, "pod", client.ObjectKeyFromObject(p).String(), client.InNamespace(p.GetNamespace()),
		client.MatchingFields{index.ServiceAccountName: podServiceAccountOf(p.(*corev1.Pod))})
}

// Reconcile counts the binding's missed pods and writes them to its status.
func (r *missedPodsReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b stsbindv1.IAMRoleBinding
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		if apierrors.IsNotFound(err) {
			r.reported.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() || !readyCurrent(&b) {
		// readySettled wakes it when the credential controller is done.
		return ctrl.Result{}, nil
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(b.Namespace),
		client.MatchingFields{podServiceAccount: b.Spec.ServiceAccountName}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the pods of ServiceAccount %s: %w", b.Spec.ServiceAccountName, err)
	}
	orig := b.DeepCopy()
	rep := reportPods(&b, pods.Items)
	setPodsStatus(&b, rep)

	last, known := r.reported.Load(req.NamespacedName)
	if warn, remember := podsEvent(rep, last, known, orig.Status.PodsWithoutCredentials); remember {
		r.reported.Store(req.NamespacedName, rep.key())
		if warn {
			r.Recorder.Eventf(&b, nil, corev1.EventTypeWarning, stsbindv1.ReasonPodsWithoutCredentials, "CheckInjection", "%s", rep.message(b.Spec.ServiceAccountName))
		}
	}
	if equality.Semantic.DeepEqual(orig.Status, b.Status) {
		return ctrl.Result{}, nil
	}
	// The lock keeps this write from replacing the conditions the credential
	// controller wrote since the cache was read (a merge patch replaces lists whole).
	err := r.Client.Status().Patch(ctx, &b, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	switch {
	case apierrors.IsConflict(err):
		logf.FromContext(ctx).V(1).Info("IAMRoleBinding changed while counting its pods; again on fresh data")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case err != nil:
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("writing status: %w", err))
	}
	if rep.applies {
		logf.FromContext(ctx).V(1).Info("Counted IAMRoleBinding pods without credentials", "pods", rep.checked, "missed", len(rep.missed))
	}
	return ctrl.Result{}, nil
}

// podReport is what a binding's status says about its ServiceAccount's pods.
type podReport struct {
	applies bool     // false for modes None and WebIdentity: nothing reported
	checked int      // pods that need the binding's credentials
	missed  []string // of those, the ones without them, sorted
}

// reportPods finds, among pods (those of the binding's namespace and
// ServiceAccount), the ones that need the binding's credentials and lack
// its Secret, unless the webhook would leave it out again. A pod that started
// before the binding existed lacks it too.
func reportPods(b *stsbindv1.IAMRoleBinding, pods []corev1.Pod) podReport {
	switch b.InjectionModeOrDefault() {
	case stsbindv1.InjectionNone:
		return podReport{}
	case stsbindv1.InjectionWebIdentity:
		// No Secret: the webhook projects a token when the provider allows
		// it at admission. Not reported yet (the pod's projected token at
		// the binding's mount directory would tell an injected pod).
		return podReport{}
	}
	rep := podReport{applies: true}
	secret := b.SecretNameOrDefault()
	for i := range pods {
		p := &pods[i]
		if podServiceAccountOf(p) != b.Spec.ServiceAccountName {
			continue
		}
		f := factsOf(p)
		if !needsCredentials(b, f) {
			continue
		}
		rep.checked++
		if !hasSecret(f, secret) && !declined(b, f) {
			rep.missed = append(rep.missed, p.Name)
		}
	}
	slices.Sort(rep.missed)
	return rep
}

// key identifies the set of missed pods.
func (rep podReport) key() string { return strings.Join(rep.missed, ",") }

// names lists up to maxNamedPods of the missed pods.
func (rep podReport) names() string {
	if len(rep.missed) <= maxNamedPods {
		return strings.Join(rep.missed, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(rep.missed[:maxNamedPods], ", "), len(rep.missed)-maxNamedPods)
}

func (rep podReport) message(sa string) string {
	if rep.checked == 0 {
		return fmt.Sprintf("No running pods of ServiceAccount %s", sa)
	}
	if len(rep.missed) == 0 {
		return fmt.Sprintf("All %d running pods of ServiceAccount %s have this binding's credentials", rep.checked, sa)
	}
	return fmt.Sprintf("%d of %d running pods of ServiceAccount %s %s without this binding's credentials: %s. "+
		"They started while the stsbind webhook was unreachable, or before this binding existed; "+
		"restart them (delete the pods, or kubectl rollout restart their workload) so that the webhook injects them",
		len(rep.missed), rep.checked, sa, plural(len(rep.missed), "runs", "run"), rep.names())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// setPodsStatus writes the report into the binding's status: the count and
// condition PodsInjected; neither for mode None, nor while the ServiceAccount
// has no pods and none were reported before (nothing to say, and no status
// write that would race a client's read-modify-write of a new binding).
func setPodsStatus(b *stsbindv1.IAMRoleBinding, rep podReport) {
	if !rep.applies || (rep.checked == 0 && b.Status.PodsWithoutCredentials == nil) {
		b.Status.PodsWithoutCredentials = nil
		meta.RemoveStatusCondition(&b.Status.Conditions, stsbindv1.ConditionPodsInjected)
		return
	}
	b.Status.PodsWithoutCredentials = ptr.To(int32(len(rep.missed)))
	c := metav1.Condition{
		Type:               stsbindv1.ConditionPodsInjected,
		Status:             metav1.ConditionTrue,
		Reason:             stsbindv1.ReasonAllPodsInjected,
		Message:            rep.message(b.Spec.ServiceAccountName),
		ObservedGeneration: b.Generation,
	}
	if len(rep.missed) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, stsbindv1.ReasonPodsWithoutCredentials
	}
	meta.SetStatusCondition(&b.Status.Conditions, c)
}

// podsEvent decides about the Warning event: warn when the set of missed pods
// changed to a non-empty one since the last event (last, when known) or, for a
// binding this process has not reported yet (after a restart), when the count
// differs from the one in the status. remember says to keep rep.key() as the
// last reported set.
func podsEvent(rep podReport, last any, known bool, statusCount *int32) (warn, remember bool) {
	if !rep.applies {
		return false, known && last != ""
	}
	if known {
		changed := last.(string) != rep.key()
		return changed && len(rep.missed) > 0, changed
	}
	seen := statusCount != nil && int(*statusCount) == len(rep.missed)
	return !seen && len(rep.missed) > 0, true
}
