package controllers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// loadSecret returns the binding's Secret, nil when there is none, or
// errSecretConflict when a Secret of that name is not this binding's. Only
// labelled Secrets are cached; a miss is confirmed with a live read where a
// Secret of ours may have lost its labels, and such a Secret gets them back.
func (r *IAMRoleBindingReconciler) loadSecret(ctx context.Context, b *stsbindv1.IAMRoleBinding) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}
	var s corev1.Secret
	err := r.Client.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		if !mayHoldUncachedSecret(b) && !r.wrote(key) {
			// A binding that never had credentials, whose Secret this process
			// never wrote: a Secret of that name is someone else's, and the
			// create that follows the STS call finds it (AlreadyExists) and
			// says so, as the live read would, only after one STS call. That
			// saves one request for every new binding.
			return nil, nil
		}
		return r.loadSecretLive(ctx, b)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key.Name, err)
	}
	return r.claimSecret(ctx, b, &s)
}

// mayHoldUncachedSecret tells whether a Secret of the binding's may exist
// without the labels that put it in the cache: the binding had credentials
// once (someone may have removed the labels since), or a Secret of its name
// was refused as someone else's (it is looked at again, live, before any STS
// call).
func mayHoldUncachedSecret(b *stsbindv1.IAMRoleBinding) bool {
	st := b.Status
	if st.LastRefreshTime != nil || st.Expiration != nil || st.ServedGeneration != 0 {
		return true
	}
	c := meta.FindStatusCondition(st.Conditions, stsbindv1.ConditionReady)
	return c != nil && c.Reason == stsbindv1.ReasonSecretConflict
}

// loadSecretLive is loadSecret with the Secret read from the API server.
func (r *IAMRoleBindingReconciler) loadSecretLive(ctx context.Context, b *stsbindv1.IAMRoleBinding) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}
	var s corev1.Secret
	err := r.APIReader.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key.Name, err)
	}
	return r.claimSecret(ctx, b, &s)
}

// claimSecret checks that s is the binding's: it adopts an orphan of an
// earlier binding of the same name, refuses anyone else's, and gives back
// lost labels.
func (r *IAMRoleBindingReconciler) claimSecret(ctx context.Context, b *stsbindv1.IAMRoleBinding, s *corev1.Secret) (*corev1.Secret, error) {
	key := client.ObjectKeyFromObject(s)
	if !metav1.IsControlledBy(s, b) && orphanOf(s, b) {
		// The previous binding of this name was deleted with
		// propagationPolicy Orphan: the garbage collector removed its owner
		// reference and left the Secret, still mounted by running pods.
		orig := s.DeepCopy()
		if err := controllerutil.SetControllerReference(b, s, r.Client.Scheme()); err != nil {
			return nil, err
		}
		if err := r.Client.Patch(ctx, s, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return nil, fmt.Errorf("adopting Secret %s: %w", key.Name, err)
		}
		logf.FromContext(ctx).Info("Adopted the orphaned IAMRoleBinding Secret", "secret", key.Name)
	}
	if !metav1.IsControlledBy(s, b) {
		owner := ""
		if ref := metav1.GetControllerOf(s); ref != nil {
			owner = ref.Kind + " " + ref.Name
		}
		return nil, errSecretConflict{name: key.Name, owner: owner}
	}
	if s.Labels[stsbindv1.LabelManagedBy] != stsbindv1.LabelManagedByValue || s.Labels[stsbindv1.LabelBinding] != b.Name {
		orig := s.DeepCopy()
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[stsbindv1.LabelManagedBy] = stsbindv1.LabelManagedByValue
		s.Labels[stsbindv1.LabelBinding] = b.Name
		if err := r.Client.Patch(ctx, s, client.MergeFrom(orig)); err != nil {
			return nil, fmt.Errorf("restoring the labels of Secret %s: %w", key.Name, err)
		}
		logf.FromContext(ctx).Info("Relabelled IAMRoleBinding Secret", "secret", key.Name)
	}
	return s, nil
}

// orphanOf tells whether s is a Secret that an earlier binding of b's name
// wrote and that no object controls any more. One another controller owns,
// or one stsbind never wrote, is never taken.
func orphanOf(s *corev1.Secret, b *stsbindv1.IAMRoleBinding) bool {
	return metav1.GetControllerOf(s) == nil && s.Type == stsbindv1.SecretType &&
		s.Labels[stsbindv1.LabelManagedBy] == stsbindv1.LabelManagedByValue && s.Labels[stsbindv1.LabelBinding] == b.Name
}

// writeSecret creates or updates the binding's Secret with new credentials.
func (r *IAMRoleBindingReconciler) writeSecret(ctx context.Context, b *stsbindv1.IAMRoleBinding, current *corev1.Secret,
	c credentials.Credentials, spec effectiveSpec, issuedAt time.Time) error {
	if current == nil {
		s := newSecret(b)
		renderSecret(s, b, c, spec, issuedAt)
		if err := controllerutil.SetControllerReference(b, s, r.Client.Scheme()); err != nil {
			return err
		}
		r.noteWrite(s)
		err := r.Client.Create(ctx, s)
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("creating Secret %s: %w", s.Name, err)
			}
			return nil
		}
		// Created meanwhile (by us, seen late, or by someone else), or there
		// before (see loadSecret): read it live and go through the ownership
		// check.
		if current, err = r.loadSecretLive(ctx, b); err != nil {
			return err
		}
		if current == nil {
			return fmt.Errorf("creating Secret %s: it exists but cannot be read", s.Name)
		}
	}
	s := current.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		renderSecret(s, b, c, spec, issuedAt)
		r.noteWrite(s)
		err := r.Client.Update(ctx, s)
		if apierrors.IsConflict(err) {
			if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s), s); gerr != nil {
				return gerr
			}
			if !metav1.IsControlledBy(s, b) {
				return errSecretConflict{name: s.Name}
			}
		}
		return err
	})
}

// noteWrite records what the controller is about to write into s, before
// the request: the watch event of the write may come before its response.
func (r *IAMRoleBindingReconciler) noteWrite(s *corev1.Secret) {
	r.written.Store(client.ObjectKeyFromObject(s), writtenState(s))
}

// wrote tells whether this process wrote, or tried to write, the Secret.
func (r *IAMRoleBindingReconciler) wrote(key types.NamespacedName) bool {
	_, ok := r.written.Load(key)
	return ok
}

// ownWrite tells whether s is, in everything the controller owns, the
// Secret as this controller last wrote it: its watch event has nothing to
// repair. Any other change (data, the controller's labels or annotations,
// type, owner, a delete) wakes the binding.
func (r *IAMRoleBindingReconciler) ownWrite(s client.Object) bool {
	secret, ok := s.(*corev1.Secret)
	if !ok {
		return false
	}
	want, ok := r.written.Load(client.ObjectKeyFromObject(s))
	return ok && want == writtenState(secret)
}

// writtenState is a digest of what the controller owns in a Secret, live
// or cached: the data (through its hash), the controller's labels and
// annotations, the type and the controlling owner.
func writtenState(s *corev1.Secret) [sha256.Size]byte {
	owner := ""
	if ref := metav1.GetControllerOf(s); ref != nil {
		owner = string(ref.UID)
	}
	h := sha256.New()
	for _, v := range []string{
		observedDataHash(s), string(s.Type), owner,
		s.Labels[stsbindv1.LabelManagedBy], s.Labels[stsbindv1.LabelBinding],
		s.Annotations[stsbindv1.AnnotationDataHash], s.Annotations[stsbindv1.AnnotationSpecHash],
		s.Annotations[stsbindv1.AnnotationIssuedAt], s.Annotations[stsbindv1.AnnotationExpiration],
	} {
		fmt.Fprintf(h, "%d:%s", len(v), v)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
