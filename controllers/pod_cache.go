package controllers

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// podServiceAccount indexes the cached pods by their ServiceAccount ("default"
// for an empty one, as the API server fills it in).
const podServiceAccount = "spec.serviceAccountName"

// annotationMirror marks the API server's copy of a static pod: the kubelet
// creates it, no webhook can give it a Secret.
const annotationMirror = "kubernetes.io/config.mirror"

// PodCache is how the manager caches pods, for the report of pods that
// missed injection: only pods that have not finished, and of each only what
// tells whether it needs and has a binding's credentials: name, ServiceAccount,
// the opt-out annotation, container names, and the Secret references of its
// volumes and environment (never a variable's value). A pod of a typical Deployment shrinks from several
// KiB to a few hundred bytes (hack/bench BenchmarkPodCache measures it).
func PodCache() cache.ByObject {
	return cache.ByObject{
		// Finished pods run nothing; the API server filters them out, and one
		// that finishes leaves the cache as a delete.
		Field: fields.AndSelectors(
			fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
			fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
		),
		Transform: func(obj any) (any, error) {
			if p, ok := obj.(*corev1.Pod); ok {
				return stripPod(p), nil
			}
			return obj, nil
		},
	}
}

// stripPod keeps of p what needsCredentials, declined and hasSecret read, and nothing
// else. Both give the same answer for p and stripPod(p) (TestStripPodKeepsTheAnswer).
func stripPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{}
	out.Name, out.Namespace, out.UID = p.Name, p.Namespace, p.UID
	out.ResourceVersion, out.DeletionTimestamp = p.ResourceVersion, p.DeletionTimestamp
	for _, k := range [...]string{stsbindv1.AnnotationInject, annotationMirror} {
		if v, ok := p.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = make(map[string]string, 1)
			}
			out.Annotations[k] = v
		}
	}
	out.Spec.ServiceAccountName = p.Spec.ServiceAccountName
	out.Spec.DeprecatedServiceAccount = p.Spec.DeprecatedServiceAccount
	out.Spec.InitContainers = stripContainers(p.Spec.InitContainers)
	out.Spec.Containers = stripContainers(p.Spec.Containers)
	for _, v := range p.Spec.Volumes {
		switch {
		case v.Secret != nil:
			out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: v.Secret.SecretName},
			}})
		case v.Projected != nil:
			var sources []corev1.VolumeProjection
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{LocalObjectReference: s.Secret.LocalObjectReference}})
				}
			}
			if len(sources) > 0 {
				out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
					Projected: &corev1.ProjectedVolumeSource{Sources: sources},
				}})
			}
		}
	}
	out.Status.Phase = p.Status.Phase
	return out
}

// stripContainers keeps each container's name, the variables that come from
// a Secret, the names (never the values) of the AWS credential variables it
// sets itself, and what it mounts under credentials.MountRoot.
func stripContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i].Name = c.Name
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				out[i].Env = append(out[i].Env, corev1.EnvVar{Name: e.Name, ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: e.ValueFrom.SecretKeyRef.LocalObjectReference, Key: e.ValueFrom.SecretKeyRef.Key},
				}})
			case isCredentialVar(e.Name):
				out[i].Env = append(out[i].Env, corev1.EnvVar{Name: e.Name})
			}
		}
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(m.MountPath, credentials.MountRoot+"/") {
				out[i].VolumeMounts = append(out[i].VolumeMounts, corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath})
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				out[i].EnvFrom = append(out[i].EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: e.SecretRef.LocalObjectReference}})
			}
		}
	}
	return out
}

// podServiceAccountOf is the pod's ServiceAccount; the API server's admission
// plugin fills in "default" for an empty one.
func podServiceAccountOf(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName != "" {
		return p.Spec.ServiceAccountName
	}
	if p.Spec.DeprecatedServiceAccount != "" {
		return p.Spec.DeprecatedServiceAccount
	}
	return "default"
}

// needsCredentials reports whether the webhook would have handed binding b's
// credentials to pod p, had it seen p: p runs as b's ServiceAccount, is
// neither finished nor going away, did not opt out, is no mirror pod, and has
// a container b's allow-list selects. b's mode is not None (the caller's check).
func needsCredentials(b *stsbindv1.IAMRoleBinding, p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if podServiceAccountOf(p) != b.Spec.ServiceAccountName {
		return false
	}
	if v, ok := p.Annotations[stsbindv1.AnnotationInject]; ok {
		if inject, err := strconv.ParseBool(v); err == nil && !inject {
			return false
		}
	}
	if _, mirror := p.Annotations[annotationMirror]; mirror {
		return false
	}
	for _, cs := range [2][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if selectsContainer(b, c.Name) {
				return true
			}
		}
	}
	return false
}

func isCredentialVar(name string) bool {
	return name == credentials.KeyAccessKeyID || name == credentials.KeySecretAccessKey || name == credentials.KeySessionToken
}

// declined reports whether the webhook leaves pod p without binding b's
// Secret on purpose, so that a restart would not change it: in Env mode a
// selected container sets an AWS credential variable itself (the pod keeps its
// own keys), in Files mode one mounts another volume at the binding's mount
// directory. Neither counts as a missed pod.
func declined(b *stsbindv1.IAMRoleBinding, p *corev1.Pod) bool {
	mode := b.InjectionModeOrDefault()
	dir := credentials.MountDir(b.Name)
	for _, cs := range [2][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if !selectsContainer(b, c.Name) {
				continue
			}
			switch mode {
			case stsbindv1.InjectionEnv:
				if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return isCredentialVar(e.Name) }) {
					return true
				}
			case stsbindv1.InjectionFiles:
				if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.TrimSuffix(m.MountPath, "/") == dir }) {
					return true
				}
			}
		}
	}
	return false
}

func selectsContainer(b *stsbindv1.IAMRoleBinding, name string) bool {
	return len(b.Spec.Injection.Containers) == 0 || slices.Contains(b.Spec.Injection.Containers, name)
}

// hasSecret reports whether the pod gets Secret name in any way the kubelet
// delivers it: a Secret or projected volume, a variable or envFrom. Each mode
// of the webhook leaves one of them (Files and Endpoint a volume, Env the
// variables or, for a binding that is not the pod's default, a volume); so
// does a pod that a person wired to the Secret by hand. It is the
// credentials' own path, not a mark the webhook writes that a copied
// manifest could carry without them.
func hasSecret(p *corev1.Pod, name string) bool {
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil && s.Secret.Name == name {
					return true
				}
			}
		}
	}
	for _, cs := range [2][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
					return true
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil && e.SecretRef.Name == name {
					return true
				}
			}
		}
	}
	return false
}
