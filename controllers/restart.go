package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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
	// Disabled turns restarts off (--restart-on-rotation=false): bindings
	// that ask for them get a Warning event when created or changed.
	Disabled bool
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
	b := ctrl.NewControllerManagedBy(mgr).
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
		WithOptions(controller.Options{MaxConcurrentReconciles: 4, SkipNameValidation: ptr.To(r.SkipNameValidation)})
	if r.Disabled {
		return b.Complete(r)
	}
	// A rotation is a new data hash on the Secret. The initial list is
	// covered by the bindings' own.
	return b.Watches(&corev1.Secret{},
		handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &stsbindv1.IAMRoleBinding{}, handler.OnlyControllerOwner()),
		builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return !e.IsInInitialList },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectOld.GetAnnotations()[stsbindv1.AnnotationDataHash] != e.ObjectNew.GetAnnotations()[stsbindv1.AnnotationDataHash]
			},
			DeleteFunc:  func(event.DeleteEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
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
	if r.Disabled && restarts(&b) {
		r.Recorder.Eventf(&b, nil, corev1.EventTypeWarning, stsbindv1.ReasonRestartOnRotationDisabled, "RolloutRestart",
			"The cluster admin turned restarts on rotation off (--restart-on-rotation=false): pods that hold these credentials in environment variables keep them until they expire")
		return ctrl.Result{}, nil
	}
	if !restarts(&b) {
		if b.Status.Restart == nil {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.writeStatus(ctx, &b, nil)
	}
	creds, expiration, issuedAt, err := r.secretCredentials(ctx, &b)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	step, wake := decideRestartStep(restartInput{Credentials: creds, Last: b.Status.Restart, Now: now})
	if step == restartRound && credentialControllerBusy(&b, expiration, issuedAt, now) {
		// Its status write would conflict with this one and be retried on
		// the keep path, which does not record the refresh.
		return ctrl.Result{RequeueAfter: 250 * time.Millisecond}, nil
	}
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
// credentials' identity, expiration and issue time; "" when it is not the
// binding's.
func (r *RestartReconciler) secretCredentials(ctx context.Context, b *stsbindv1.IAMRoleBinding) (id string, expiration, issuedAt time.Time, err error) {
	var s corev1.Secret
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}, &s)
	if apierrors.IsNotFound(err) {
		return "", time.Time{}, time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, time.Time{}, fmt.Errorf("reading Secret %s: %w", b.SecretNameOrDefault(), err)
	}
	if !metav1.IsControlledBy(&s, b) {
		return "", time.Time{}, time.Time{}, nil
	}
	expiration, _ = time.Parse(time.RFC3339, s.Annotations[stsbindv1.AnnotationExpiration])
	issuedAt, _ = time.Parse(time.RFC3339, s.Annotations[stsbindv1.AnnotationIssuedAt])
	return credentialsID(s.Annotations[stsbindv1.AnnotationDataHash]), expiration, issuedAt, nil
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
