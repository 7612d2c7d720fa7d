package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// labelled Secrets are cached; a miss is confirmed with a live read, and a
// Secret of ours that lost its labels gets them back.
func (r *IAMRoleBindingReconciler) loadSecret(ctx context.Context, b *stsbindv1.IAMRoleBinding) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}
	var s corev1.Secret
	err := r.Client.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, &s)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key.Name, err)
	}
	if !metav1.IsControlledBy(&s, b) && orphanOf(&s, b) {
		// The previous binding of this name was deleted with
		// propagationPolicy Orphan: the garbage collector removed its owner
		// reference and left the Secret, still mounted by running pods.
		orig := s.DeepCopy()
		if err := controllerutil.SetControllerReference(b, &s, r.Client.Scheme()); err != nil {
			return nil, err
		}
		if err := r.Client.Patch(ctx, &s, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return nil, fmt.Errorf("adopting Secret %s: %w", key.Name, err)
		}
		logf.FromContext(ctx).Info("Adopted the orphaned IAMRoleBinding Secret", "secret", key.Name)
	}
	if !metav1.IsControlledBy(&s, b) {
		owner := ""
		if ref := metav1.GetControllerOf(&s); ref != nil {
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
		if err := r.Client.Patch(ctx, &s, client.MergeFrom(orig)); err != nil {
			return nil, fmt.Errorf("restoring the labels of Secret %s: %w", key.Name, err)
		}
		logf.FromContext(ctx).Info("Relabelled IAMRoleBinding Secret", "secret", key.Name)
	}
	return &s, nil
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
		err := r.Client.Create(ctx, s)
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("creating Secret %s: %w", s.Name, err)
			}
			r.written.Store(client.ObjectKeyFromObject(s), s.ResourceVersion)
			return nil
		}
		// Created meanwhile (by us, seen late, or by someone else): read it live
		// and go through the ownership check once more.
		if current, err = r.loadSecret(ctx, b); err != nil {
			return err
		}
		if current == nil {
			return fmt.Errorf("creating Secret %s: it exists but cannot be read", s.Name)
		}
	}
	s := current.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		renderSecret(s, b, c, spec, issuedAt)
		err := r.Client.Update(ctx, s)
		if apierrors.IsConflict(err) {
			if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s), s); gerr != nil {
				return gerr
			}
			if !metav1.IsControlledBy(s, b) {
				return errSecretConflict{name: s.Name}
			}
		}
		if err != nil {
			return err
		}
		r.written.Store(client.ObjectKeyFromObject(s), s.ResourceVersion)
		return nil
	})
}
