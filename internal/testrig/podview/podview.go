// Package podview turns a stored pod into what one of its containers would
// see: its environment, with secretKeyRef resolved, and its Secret volumes
// written at their mount paths, as kubelet would write them. The end-to-end
// tests and the demo run real AWS clients in that view.
package podview

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// View is what a container of a pod gets from its spec: environment
// variables (secretKeyRef resolved) and Secret volumes written to their mount
// paths on this machine.
type View struct {
	Env  []string
	dirs []string
}

// Materialize resolves the env of container (an app or init container) and writes its Secret volume mounts at
// their real paths, as kubelet would. secrets are looked up by name.
func Materialize(pod *corev1.Pod, container string, secrets map[string]*corev1.Secret) (*View, error) {
	var c *corev1.Container
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == container {
				c = &cs[i]
			}
		}
	}
	if c == nil {
		return nil, fmt.Errorf("pod has no container %q", container)
	}
	v := &View{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			v.Env = append(v.Env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := secrets[ref.Name]
			if !ok {
				return nil, fmt.Errorf("env %s: Secret %s not given", e.Name, ref.Name)
			}
			val, ok := s.Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			v.Env = append(v.Env, e.Name+"="+string(val))
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, vol := range pod.Spec.Volumes {
		volumes[vol.Name] = vol
	}
	for _, m := range c.VolumeMounts {
		vol, ok := volumes[m.Name]
		if !ok || vol.Secret == nil {
			continue
		}
		if m.SubPath != "" {
			return nil, fmt.Errorf("mount %s uses subPath, which never updates", m.Name)
		}
		s, ok := secrets[vol.Secret.SecretName]
		if !ok {
			return nil, fmt.Errorf("volume %s: Secret %s not given", m.Name, vol.Secret.SecretName)
		}
		if err := writeSecretDir(m.MountPath, s); err != nil {
			v.Cleanup()
			return nil, err
		}
		v.dirs = append(v.dirs, m.MountPath)
	}
	return v, nil
}

// writeSecretDir writes every key as a file, replacing what is there, as
// kubelet's atomic writer does when a Secret changes.
func writeSecretDir(dir string, s *corev1.Secret) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the mount path %s (the e2e tests run as root, like CI): %w", dir, err)
	}
	for k, val := range s.Data {
		tmp := filepath.Join(dir, "."+k+".tmp")
		if err := os.WriteFile(tmp, val, 0o444); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, k)); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup removes the written mount paths.
func (v *View) Cleanup() {
	for _, d := range v.dirs {
		_ = os.RemoveAll(d)
	}
}

// Environ is the container's environment plus what any process needs to run.
func (v *View) Environ(home string) []string {
	out := append([]string{"PATH=/usr/bin:/bin", "HOME=" + home, "AWS_EC2_METADATA_DISABLED=true"}, v.Env...)
	return out
}

// Lookup is the value of a variable of the container.
func (v *View) Lookup(name string) string {
	for _, kv := range v.Env {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			return val
		}
	}
	return ""
}
