package controllers

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

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
	accounts := servingAccounts(b)
	var pods corev1.PodList
	for _, sa := range accounts {
		var some corev1.PodList
		if err := r.APIReader.List(ctx, &some, client.InNamespace(b.Namespace),
			client.MatchingFields{"spec.serviceAccountName": sa}); err != nil {
			return d, fmt.Errorf("listing the pods of ServiceAccount %s: %w", sa, err)
		}
		pods.Items = append(pods.Items, some.Items...)
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
		if obj.GetUID() != key.uid || !slices.Contains(accounts, sa) {
			d.refused = append(d.refused, fmt.Sprintf("Pod %s names %s %s as its owner, but that %s's pods do not run as ServiceAccount %s: not restarted",
				claimedBy[key], key.kind, key.name, key.kind, strings.Join(accounts, " or ")))
			continue
		}
		d.workloads = append(d.workloads, workload{kind: key.kind, obj: obj, annotation: template.Annotations[stsbindv1.AnnotationRestartPrefix+b.Name]})
	}
	return d, nil
}

// servingAccounts are the ServiceAccounts whose pods may hold the Secret's
// credentials: the spec's and, while a refused change keeps the last
// working generation served, that one's.
func servingAccounts(b *stsbindv1.IAMRoleBinding) []string {
	accounts := []string{b.Spec.ServiceAccountName}
	if s := b.Status.ServedSpec; s != nil && s.ServiceAccountName != "" && s.ServiceAccountName != b.Spec.ServiceAccountName {
		accounts = append(accounts, s.ServiceAccountName)
	}
	return accounts
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
