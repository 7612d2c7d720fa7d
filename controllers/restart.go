package controllers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
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

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// RestartReconciler restarts the workloads whose pods hold a binding's
// credentials in environment variables when the credentials rotate
// (spec.injection.restartOnRotation: Rollout). It watches the bindings'
// Secrets: a new data hash is a rotation. What it restarted is in the pod
// templates (annotation restart.stsbind.dev/<binding>) and in
// status.restart, so a restarted controller restarts nothing again.
type RestartReconciler struct {
	Client client.Client
	// APIReader lists pods and reads workloads live: neither is cached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// MinInterval is the least time between two restarts of one workload.
	// Default 5m.
	MinInterval time.Duration
	// SkipNameValidation lets a second manager in one process register the
	// controller again (restart tests).
	SkipNameValidation bool
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// SetupWithManager registers the controller.
func (r *RestartReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MinInterval == 0 {
		r.MinInterval = 5 * time.Minute
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("iamrolebinding-restart").
		// Only bindings that restart, or that did and keep a record of it.
		// Status writes do not bump the generation.
		For(&stsbindv1.IAMRoleBinding{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return restartConcerns(e.Object) },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() &&
					(restartConcerns(e.ObjectOld) || restartConcerns(e.ObjectNew))
			},
			DeleteFunc:  func(event.DeleteEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		// A rotation is a new data hash on the Secret. The initial list is
		// covered by the bindings' own.
		Watches(&corev1.Secret{},
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &stsbindv1.IAMRoleBinding{}, handler.OnlyControllerOwner()),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc: func(e event.CreateEvent) bool { return !e.IsInInitialList },
				UpdateFunc: func(e event.UpdateEvent) bool {
					return e.ObjectOld.GetAnnotations()[stsbindv1.AnnotationDataHash] != e.ObjectNew.GetAnnotations()[stsbindv1.AnnotationDataHash]
				},
				DeleteFunc:  func(event.DeleteEvent) bool { return false },
				GenericFunc: func(event.GenericEvent) bool { return false },
			})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4, SkipNameValidation: ptr.To(r.SkipNameValidation)}).
		Complete(r)
}

func restartConcerns(o client.Object) bool {
	b, ok := o.(*stsbindv1.IAMRoleBinding)
	return ok && (restarts(b) || b.Status.Restart != nil)
}

func restarts(b *stsbindv1.IAMRoleBinding) bool {
	return b.Spec.Injection.RestartOnRotation == stsbindv1.RestartRollout
}

// Reconcile restarts what holds rotated credentials of one binding.
func (r *RestartReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b stsbindv1.IAMRoleBinding
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if !restarts(&b) {
		if b.Status.Restart == nil {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.writeStatus(ctx, &b, nil)
	}
	creds, expiration, err := r.secretCredentials(ctx, &b)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	step, wake := decideRestartStep(restartInput{Credentials: creds, Last: b.Status.Restart, Now: now})
	if step != restartNothing {
		// The cache may not hold this controller's last status write yet:
		// decide again on the binding as it is.
		if err := r.APIReader.Get(ctx, req.NamespacedName, &b); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		step, wake = decideRestartStep(restartInput{Credentials: creds, Last: b.Status.Restart, Now: now})
	}
	log := logf.FromContext(ctx).WithValues("credentials", creds, "step", step.String())
	switch step {
	case restartNothing:
		log.V(1).Info("Checked IAMRoleBinding restarts: nothing rotated", "nextRestart", wake)
		return requeueAt(wake, now), nil
	case restartBaseline:
		log.V(1).Info("Recorded IAMRoleBinding credentials for restarts on rotation")
		st := &stsbindv1.RestartStatus{Credentials: creds, Expiration: timeOrNil(expiration)}
		return ctrl.Result{}, r.writeStatus(ctx, &b, st)
	}
	st, wake, err := r.restartWorkloads(ctx, &b, step, creds, expiration, now)
	if werr := r.writeStatus(ctx, &b, st); werr != nil {
		err = errors.Join(err, werr)
	}
	return requeueAt(wake, now), err
}

// secretCredentials reads the binding's Secret from the cache: its
// credentials' identity and expiration, "" when it is not the binding's.
func (r *RestartReconciler) secretCredentials(ctx context.Context, b *stsbindv1.IAMRoleBinding) (string, time.Time, error) {
	var s corev1.Secret
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}, &s)
	if apierrors.IsNotFound(err) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading Secret %s: %w", b.SecretNameOrDefault(), err)
	}
	if !metav1.IsControlledBy(&s, b) {
		return "", time.Time{}, nil
	}
	exp, _ := time.Parse(time.RFC3339, s.Annotations[stsbindv1.AnnotationExpiration])
	return credentialsID(s.Annotations[stsbindv1.AnnotationDataHash]), exp, nil
}

// restartWorkloads finds the workloads whose pods hold the binding's
// credentials and restarts or schedules them; it returns the new status.
func (r *RestartReconciler) restartWorkloads(ctx context.Context, b *stsbindv1.IAMRoleBinding, step restartStep,
	creds string, expiration, now time.Time) (*stsbindv1.RestartStatus, time.Time, error) {
	last := b.Status.Restart
	st := last.DeepCopy()
	if step == restartRound {
		st = &stsbindv1.RestartStatus{Credentials: creds, Expiration: timeOrNil(expiration)}
	}
	found, err := r.discover(ctx, b)
	if err != nil {
		// Nothing was restarted: the same round runs again on the retry.
		return last, time.Time{}, err
	}
	prev := map[string]*stsbindv1.WorkloadRestart{}
	for i := range last.Workloads {
		w := &last.Workloads[i]
		prev[w.Kind+"/"+w.Name] = w
	}
	var heldExpiration time.Time
	if last.Expiration != nil {
		heldExpiration = last.Expiration.Time
	}
	var wake time.Time
	var errs []error
	entries := map[string]stsbindv1.WorkloadRestart{}
	if step == restartPending {
		// The others stay as they are; a waiting one that is gone (or no
		// longer holds the credentials) is dropped below.
		for _, w := range st.Workloads {
			if w.NextRestartTime == nil {
				entries[w.Kind+"/"+w.Name] = w
			}
		}
	}
	for _, w := range found.workloads {
		key := w.kind + "/" + w.obj.GetName()
		p := prev[key]
		if step == restartPending && (p == nil || p.NextRestartTime == nil) {
			continue // not waiting: handled by its round
		}
		entry := stsbindv1.WorkloadRestart{Kind: w.kind, Name: w.obj.GetName(), Credentials: w.annotation}
		if p != nil {
			entry.LastRestartTime = p.LastRestartTime
		}
		action := decideWorkload(workloadInput{
			Annotation: w.annotation, Credentials: creds, Prev: p, HeldExpiration: heldExpiration,
			Round: step == restartRound, Now: now, MinInterval: r.MinInterval,
		})
		switch {
		case action.Restart:
			if err := r.restart(ctx, b, w, creds); err != nil {
				errs = append(errs, err)
				r.Recorder.Eventf(b, w.obj, corev1.EventTypeWarning, stsbindv1.ReasonRolloutFailed, "RolloutRestart",
					"Restarting %s %s failed, retrying: %v", w.kind, w.obj.GetName(), err)
				entry.NextRestartTime = ptr.To(metav1.NewTime(now))
				break
			}
			entry.Credentials, entry.LastRestartTime = creds, ptr.To(metav1.NewTime(now))
			note := fmt.Sprintf("Restarted %s %s: its pods hold credentials that were replaced in Secret %s", w.kind, w.obj.GetName(), b.SecretNameOrDefault())
			if !heldExpiration.IsZero() && step == restartRound {
				note += fmt.Sprintf(" and expire at %s", heldExpiration.UTC().Format(time.RFC3339))
			}
			r.Recorder.Eventf(b, w.obj, corev1.EventTypeNormal, stsbindv1.ReasonRolloutRestarted, "RolloutRestart", "%s", note)
			logf.FromContext(ctx).Info("Restarted workload for rotated IAMRoleBinding credentials", "kind", w.kind, "workload", w.obj.GetName())
			if why := ineffective(w.obj); why != "" {
				r.Recorder.Eventf(b, w.obj, corev1.EventTypeWarning, stsbindv1.ReasonRolloutIneffective, "RolloutRestart",
					"%s %s got the restart annotation, but %s; until then they hold the replaced credentials", w.kind, w.obj.GetName(), why)
			}
		case !action.WaitUntil.IsZero():
			entry.NextRestartTime = ptr.To(metav1.NewTime(action.WaitUntil))
			if p != nil && p.LastRestartTime != nil && p.NextRestartTime == nil {
				r.Recorder.Eventf(b, w.obj, corev1.EventTypeNormal, stsbindv1.ReasonRolloutDeferred, "RolloutRestart",
					"%s %s was restarted at %s; the next restart waits until %s (minimum interval %s, and before its pods' credentials expire)",
					w.kind, w.obj.GetName(), p.LastRestartTime.UTC().Format(time.RFC3339), action.WaitUntil.UTC().Format(time.RFC3339), r.MinInterval)
			}
			if wake.IsZero() || action.WaitUntil.Before(wake) {
				wake = action.WaitUntil
			}
		}
		entries[key] = entry
	}
	st.Workloads = st.Workloads[:0]
	for _, e := range entries {
		st.Workloads = append(st.Workloads, e)
	}
	slices.SortFunc(st.Workloads, func(a, b stsbindv1.WorkloadRestart) int {
		return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
	})
	// The status keeps the waiting ones first when there are too many.
	if len(st.Workloads) > maxStatusWorkloads {
		slices.SortStableFunc(st.Workloads, func(a, b stsbindv1.WorkloadRestart) int {
			return boolOrder(a.NextRestartTime != nil, b.NextRestartTime != nil)
		})
		st.Workloads = st.Workloads[:maxStatusWorkloads]
	}
	if step == restartRound {
		r.reportOthers(b, found)
	}
	return st, wake, errors.Join(errs...)
}

// maxStatusWorkloads is the CRD's MaxItems of status.restart.workloads.
const maxStatusWorkloads = 100

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// reportOthers tells about pods that hold the credentials but cannot be
// restarted, and ones whose owner claim did not hold.
func (r *RestartReconciler) reportOthers(b *stsbindv1.IAMRoleBinding, found discovered) {
	if len(found.unmanaged) > 0 {
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, stsbindv1.ReasonPodsNotRestartable, "RolloutRestart",
			"Pods %s hold the replaced credentials in environment variables but belong to no Deployment, StatefulSet or DaemonSet: restart them yourself", names(found.unmanaged))
	}
	for _, refused := range found.refused {
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, stsbindv1.ReasonRolloutRefused, "RolloutRestart", "%s", refused)
	}
}

// names lists up to five names and how many more there are.
func names(ns []string) string {
	slices.Sort(ns)
	if len(ns) <= 5 {
		return strings.Join(ns, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ns[:5], ", "), len(ns)-5)
}

// restart sets the binding's annotation on the workload's pod template to
// the credentials' identity, which rolls its pods out.
func (r *RestartReconciler) restart(ctx context.Context, b *stsbindv1.IAMRoleBinding, w workload, creds string) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{stsbindv1.AnnotationRestartPrefix + b.Name: creds},
	}}}})
	if err != nil {
		return err
	}
	if err := r.Client.Patch(ctx, w.obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patching %s %s: %w", w.kind, w.obj.GetName(), err)
	}
	return nil
}

// writeStatus replaces status.restart, on conflict again on the binding as
// it is: the rest of the status is the credential controller's.
func (r *RestartReconciler) writeStatus(ctx context.Context, b *stsbindv1.IAMRoleBinding, st *stsbindv1.RestartStatus) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		orig := b.DeepCopy()
		b.Status.Restart = st
		err := r.Client.Status().Patch(ctx, b, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsConflict(err) {
			if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(b), b); gerr != nil {
				return gerr
			}
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("writing status.restart: %w", err)
		}
		return err
	})
}

func requeueAt(at, now time.Time) ctrl.Result {
	if at.IsZero() {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: max(at.Sub(now), time.Second)}
}

func timeOrNil(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return ptr.To(metav1.NewTime(t))
}

// workload is a Deployment, StatefulSet or DaemonSet, read live.
type workload struct {
	kind       string
	obj        client.Object
	annotation string // the binding's restart annotation on its pod template
}

type discovered struct {
	workloads []workload
	unmanaged []string // pods without a workload that can be rolled out
	refused   []string // why a claimed owner was not taken
}

// ownerKey is a workload named by a pod's (or ReplicaSet's) owner reference.
type ownerKey struct {
	kind, name string
	uid        types.UID
}

// discover lists the pods of the binding's ServiceAccount that read its
// Secret into environment variables, and their workloads. A workload is
// taken only if it is the controller that the pod (through its ReplicaSet)
// names, with that UID, and its own pod template runs as the binding's
// ServiceAccount: a pod cannot make stsbind restart a workload whose pods do
// not get this binding's credentials.
func (r *RestartReconciler) discover(ctx context.Context, b *stsbindv1.IAMRoleBinding) (discovered, error) {
	var d discovered
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(b.Namespace),
		client.MatchingFields{"spec.serviceAccountName": b.Spec.ServiceAccountName}); err != nil {
		return d, fmt.Errorf("listing the pods of ServiceAccount %s: %w", b.Spec.ServiceAccountName, err)
	}
	var owners []ownerKey
	claimedBy := map[ownerKey]string{}
	replicaSets := map[string]*appsv1.ReplicaSet{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !holdsCredentials(pod) || !readsSecret(pod, b.SecretNameOrDefault()) {
			continue
		}
		ref := metav1.GetControllerOf(pod)
		var key ownerKey
		switch {
		case ref == nil || !strings.HasPrefix(ref.APIVersion, "apps/") && !strings.HasPrefix(ref.APIVersion, "batch/"):
			d.unmanaged = append(d.unmanaged, pod.Name)
			continue
		case strings.HasPrefix(ref.APIVersion, "batch/"):
			continue // Jobs run to completion; Env is meant for them
		case ref.Kind == "ReplicaSet":
			rs, ok := replicaSets[ref.Name]
			if !ok {
				rs = &appsv1.ReplicaSet{}
				if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: ref.Name}, rs); err != nil {
					if !apierrors.IsNotFound(err) {
						return d, fmt.Errorf("reading ReplicaSet %s: %w", ref.Name, err)
					}
					rs = nil
				}
				replicaSets[ref.Name] = rs
			}
			if rs == nil || rs.UID != ref.UID {
				continue // gone: its pods go too
			}
			dep := metav1.GetControllerOf(rs)
			if dep == nil || dep.Kind != "Deployment" || !strings.HasPrefix(dep.APIVersion, "apps/") {
				d.unmanaged = append(d.unmanaged, pod.Name)
				continue
			}
			key = ownerKey{"Deployment", dep.Name, dep.UID}
		case ref.Kind == "StatefulSet" || ref.Kind == "DaemonSet":
			key = ownerKey{ref.Kind, ref.Name, ref.UID}
		default:
			d.unmanaged = append(d.unmanaged, pod.Name)
			continue
		}
		if _, seen := claimedBy[key]; !seen {
			claimedBy[key] = pod.Name
			owners = append(owners, key)
		}
	}
	for _, key := range owners {
		obj, template := newWorkload(key.kind)
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: key.name}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return d, fmt.Errorf("reading %s %s: %w", key.kind, key.name, err)
		}
		sa := cmp.Or(template.Spec.ServiceAccountName, "default")
		if obj.GetUID() != key.uid || sa != b.Spec.ServiceAccountName {
			d.refused = append(d.refused, fmt.Sprintf("Pod %s names %s %s as its owner, but that %s's pods do not run as ServiceAccount %s: not restarted",
				claimedBy[key], key.kind, key.name, key.kind, b.Spec.ServiceAccountName))
			continue
		}
		d.workloads = append(d.workloads, workload{kind: key.kind, obj: obj, annotation: template.Annotations[stsbindv1.AnnotationRestartPrefix+b.Name]})
	}
	return d, nil
}

// newWorkload is an empty object of the kind and its pod template.
func newWorkload(kind string) (client.Object, *corev1.PodTemplateSpec) {
	switch kind {
	case "StatefulSet":
		o := &appsv1.StatefulSet{}
		return o, &o.Spec.Template
	case "DaemonSet":
		o := &appsv1.DaemonSet{}
		return o, &o.Spec.Template
	}
	o := &appsv1.Deployment{}
	return o, &o.Spec.Template
}

