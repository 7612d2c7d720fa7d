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

// A cached pod carries what the report reads in these annotations instead of
// its spec (comma-separated; Secret, container and binding names hold no
// comma). The slashes after the prefix make them keys no real pod has.
const (
	cachedContainers = "stsbind.dev/cached/containers" // init, then regular containers
	cachedSecrets    = "stsbind.dev/cached/secrets"    // Secrets of volumes, projections, env, envFrom
	cachedOwnKeys    = "stsbind.dev/cached/own-keys"   // containers that set an AWS credential variable
	cachedMounts     = "stsbind.dev/cached/mounts"     // container/dir of mounts at credentials.MountRoot/dir
)

// PodCache is how the manager caches pods, for the report of pods that
// missed injection: only pods that have not finished, and of each only what
// tells whether it needs and has a binding's credentials (name,
// ServiceAccount, the opt-out annotation, container names, the Secrets it
// references; never a variable's value), folded into a few annotations. A
// pod of a typical Deployment shrinks from about 13 KB to under 2 KB (hack/bench
// BenchmarkPodCache measures it).
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

// podFacts is what the report knows about a pod.
type podFacts struct {
	finished, optedOut, mirror bool
	containers, secrets        []string
	ownKeys, mounts            []string
}

// stripPod is the cached form of p: metadata for the cache's keys and
// indexes, the phase, and factsOf(p) in annotations. An already stripped pod
// (no containers: a real one has at least one) is returned as it is.
func stripPod(p *corev1.Pod) *corev1.Pod {
	if _, done := p.Annotations[cachedContainers]; done && len(p.Spec.Containers) == 0 {
		return p
	}
	f := factsOf(p)
	out := &corev1.Pod{}
	out.Name, out.Namespace, out.UID = p.Name, p.Namespace, p.UID
	out.ResourceVersion, out.DeletionTimestamp = p.ResourceVersion, p.DeletionTimestamp
	out.Spec.ServiceAccountName = p.Spec.ServiceAccountName
	out.Spec.DeprecatedServiceAccount = p.Spec.DeprecatedServiceAccount
	out.Status.Phase = p.Status.Phase
	a := make(map[string]string, 4)
	for _, k := range [...]string{stsbindv1.AnnotationInject, annotationMirror} {
		if v, ok := p.Annotations[k]; ok {
			a[k] = v
		}
	}
	a[cachedContainers] = strings.Join(f.containers, ",")
	for k, v := range map[string][]string{cachedSecrets: f.secrets, cachedOwnKeys: f.ownKeys, cachedMounts: f.mounts} {
		if len(v) > 0 {
			a[k] = strings.Join(v, ",")
		}
	}
	out.Annotations = a
	return out
}

// factsOf reads a pod, whole or stripped.
func factsOf(p *corev1.Pod) podFacts {
	f := podFacts{finished: p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed}
	if v, ok := p.Annotations[stsbindv1.AnnotationInject]; ok {
		inject, err := strconv.ParseBool(v)
		f.optedOut = err == nil && !inject
	}
	_, f.mirror = p.Annotations[annotationMirror]
	if _, done := p.Annotations[cachedContainers]; done && len(p.Spec.Containers) == 0 {
		split := func(k string) []string {
			if v := p.Annotations[k]; v != "" {
				return strings.Split(v, ",")
			}
			return nil
		}
		f.containers, f.secrets, f.ownKeys, f.mounts = split(cachedContainers), split(cachedSecrets), split(cachedOwnKeys), split(cachedMounts)
		return f
	}
	addSecret := func(name string) {
		if name != "" && !slices.Contains(f.secrets, name) {
			f.secrets = append(f.secrets, name)
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil {
			addSecret(v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					addSecret(s.Secret.Name)
				}
			}
		}
	}
	for _, cs := range [2][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			f.containers = append(f.containers, c.Name)
			ownKey := false
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					addSecret(e.ValueFrom.SecretKeyRef.Name)
				}
				ownKey = ownKey || credentials.IsSourceVar(e.Name)
			}
			if ownKey {
				f.ownKeys = append(f.ownKeys, c.Name)
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					addSecret(e.SecretRef.Name)
				}
			}
			for _, m := range c.VolumeMounts {
				dir, ok := strings.CutPrefix(strings.TrimSuffix(m.MountPath, "/"), credentials.MountRoot+"/")
				if ok && dir != "" && !strings.ContainsAny(dir, "/,") {
					f.mounts = append(f.mounts, c.Name+"/"+dir)
				}
			}
		}
	}
	slices.Sort(f.secrets)
	return f
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
// credentials to the pod, had it seen it: the pod (of b's ServiceAccount, the
// caller's check) is neither finished nor going away, did not opt out, is no
// mirror pod, and has a container b's allow-list selects. b's mode is not
// None (the caller's check too).
func needsCredentials(b *stsbindv1.IAMRoleBinding, f podFacts) bool {
	if f.finished || f.optedOut || f.mirror {
		return false
	}
	return slices.ContainsFunc(f.containers, func(c string) bool { return selectsContainer(b, c) })
}

// declined reports whether the webhook leaves the pod without binding b's
// Secret on purpose, so that a restart would not change it: in Env mode a
// selected container sets an AWS credential variable itself (the pod keeps its
// own keys), in Files mode one mounts another volume at the binding's mount
// directory. Neither counts as a missed pod.
func declined(b *stsbindv1.IAMRoleBinding, f podFacts) bool {
	switch b.InjectionModeOrDefault() {
	case stsbindv1.InjectionEnv:
		return slices.ContainsFunc(f.ownKeys, func(c string) bool { return selectsContainer(b, c) })
	case stsbindv1.InjectionFiles:
		return slices.ContainsFunc(f.mounts, func(m string) bool {
			c, dir, _ := strings.Cut(m, "/")
			return dir == b.Name && selectsContainer(b, c)
		})
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
func hasSecret(f podFacts, name string) bool {
	return slices.Contains(f.secrets, name)
}
