package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// usableBindings drops the bindings whose Secret belongs to someone else. A
// binding may name any Secret of its namespace, so mounting one it does not
// control would hand its pods another binding's credentials (the controller
// only marks such a binding SecretConflict). A binding is usable when its
// Secret does not exist yet (the controller will create it) or is controlled
// by that binding. secrets maps each looked-up Secret name to its metadata,
// nil when it does not exist; a name not looked up counts as not existing.
// usable is bindings itself when nothing is refused; refused point into bindings.
// WebIdentity bindings mount no Secret and are never refused here.
func usableBindings(bindings []stsbindv1.IAMRoleBinding, secrets map[string]*metav1.ObjectMeta) (usable []stsbindv1.IAMRoleBinding, refused []*stsbindv1.IAMRoleBinding) {
	for i := range bindings {
		b := &bindings[i]
		if s := secrets[b.SecretNameOrDefault()]; s != nil && usesSecret(b) && !metav1.IsControlledBy(s, b) {
			refused = append(refused, b)
		}
	}
	if len(refused) == 0 {
		return bindings, nil
	}
	usable = make([]stsbindv1.IAMRoleBinding, 0, len(bindings)-len(refused))
	for i := range bindings {
		b := &bindings[i]
		if s := secrets[b.SecretNameOrDefault()]; s == nil || !usesSecret(b) || metav1.IsControlledBy(s, b) {
			usable = append(usable, *b)
		}
	}
	return usable, refused
}

// secretsOf looks up the Secrets of the bindings that apply to the pod, for
// usableBindings. The cache holds only Secrets labelled as stsbind's, so one it
// lacks may still exist: a foreign Secret, one of ours that lost its label, or
// one the cache has not seen yet. For those a metadata-only GET asks the API
// server (no Secret data is read); NotFound means the controller has yet to
// create it. A Secret found in the cache costs no request.
func (d *PodDefaulter) secretsOf(ctx context.Context, ns string, pod *corev1.Pod, bindings []stsbindv1.IAMRoleBinding) (map[string]*metav1.ObjectMeta, error) {
	sa := serviceAccountOf(pod)
	var secrets map[string]*metav1.ObjectMeta
	for i := range bindings {
		b := &bindings[i]
		name := b.SecretNameOrDefault()
		if _, seen := secrets[name]; seen || !appliesTo(b, pod, sa) || !usesSecret(b) {
			continue
		}
		if secrets == nil {
			secrets = make(map[string]*metav1.ObjectMeta, 1)
		}
		key := client.ObjectKey{Namespace: ns, Name: name}
		var cached corev1.Secret
		// Only the metadata is read: no deep copy of the cached object.
		err := d.Cache.Get(ctx, key, &cached, client.UnsafeDisableDeepCopy)
		if err == nil {
			secrets[name] = &cached.ObjectMeta
			continue
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("getting Secret %s of IAMRoleBinding %s from the cache: %w", name, b.Name, err)
		}
		live := &metav1.PartialObjectMetadata{}
		live.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		switch err := d.APIReader.Get(ctx, key, live); {
		case err == nil:
			secrets[name] = &live.ObjectMeta
		case apierrors.IsNotFound(err):
			secrets[name] = nil
		default:
			return nil, fmt.Errorf("getting Secret %s of IAMRoleBinding %s from the API server: %w", name, b.Name, err)
		}
	}
	return secrets, nil
}

// refused records why the pod gets nothing from binding b. The note names the
// binding and the Secret, nothing read from the Secret.
func (d *PodDefaulter) refused(ctx context.Context, pod *corev1.Pod, ns, sa string, b *stsbindv1.IAMRoleBinding) {
	name := podName(pod)
	secret := b.SecretNameOrDefault()
	logf.FromContext(ctx).Info("Refused an IAMRoleBinding whose Secret belongs to someone else",
		"pod", name, "binding", b.Name, "secret", secret)
	if d.Recorder == nil {
		return
	}
	related := &stsbindv1.IAMRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: stsbindv1.GroupVersion.String(), Kind: "IAMRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: b.Name, UID: b.UID},
	}
	d.Recorder.Eventf(serviceAccountRef(ns, sa), related, corev1.EventTypeWarning, stsbindv1.ReasonSecretConflict, "InjectCredentials",
		"Pod %s gets no AWS credentials from IAMRoleBinding %s: Secret %s belongs to someone else (it is not controlled by that binding)",
		name, b.Name, secret)
}
