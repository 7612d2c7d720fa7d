package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// envFromNames reads the ConfigMaps and Secrets that the pod's containers
// take whole (envFrom) and returns, per container, the AWS_* variables they
// set: env wins over envFrom, so a variable stsbind set would silently hide
// one of them. Only sources whose prefix can give an AWS_* name are read,
// each once, from the API server; only their key names are kept. A source
// that does not exist sets nothing (kubelet either waits for it or, when
// optional, sets nothing either). A pod without such sources costs nothing.
func (d *PodDefaulter) envFromNames(ctx context.Context, ns string, pod *corev1.Pod) (EnvFromNames, error) {
	var names EnvFromNames
	var read map[string][]string // keys by "ConfigMap/name" or "Secret/name"
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			for _, src := range c.EnvFrom {
				if !mayYieldAWSNames(src.Prefix) {
					continue
				}
				if read == nil {
					read = make(map[string][]string, 1)
				}
				keys, err := d.envSourceKeys(ctx, ns, src, read)
				if err != nil {
					return nil, err
				}
				for _, k := range keys {
					if name := src.Prefix + k; strings.HasPrefix(name, "AWS_") {
						if names == nil {
							names = make(EnvFromNames, 1)
						}
						names[c.Name] = append(names[c.Name], name)
					}
				}
			}
		}
	}
	return names, nil
}

// envSourceKeys returns the key names of one envFrom source, read once per pod.
func (d *PodDefaulter) envSourceKeys(ctx context.Context, ns string, src corev1.EnvFromSource, read map[string][]string) ([]string, error) {
	var obj client.Object
	var id string
	switch {
	case src.ConfigMapRef != nil:
		obj, id = &corev1.ConfigMap{}, "ConfigMap/"+src.ConfigMapRef.Name
		obj.SetName(src.ConfigMapRef.Name)
	case src.SecretRef != nil:
		obj, id = &corev1.Secret{}, "Secret/"+src.SecretRef.Name
		obj.SetName(src.SecretRef.Name)
	default:
		return nil, nil
	}
	if keys, ok := read[id]; ok {
		return keys, nil
	}
	err := d.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: obj.GetName()}, obj)
	if apierrors.IsNotFound(err) {
		read[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s, which a container takes with envFrom: %w", id, err)
	}
	var keys []string
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		for k := range o.Data {
			keys = append(keys, k)
		}
		for k := range o.BinaryData {
			keys = append(keys, k)
		}
	case *corev1.Secret:
		// Only the names: the values are dropped with the object.
		for k := range o.Data {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // the notes name the first one
	read[id] = keys
	return keys, nil
}
