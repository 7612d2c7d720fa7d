package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// addSecretVolume adds the binding's Secret as volume vol; optional for a
// binding that cannot issue credentials, so that the pod need not wait.
func addSecretVolume(pod *corev1.Pod, vol string, b *stsbindv1.IAMRoleBinding, optional bool) {
	mode := secretFileMode
	src := &corev1.SecretVolumeSource{SecretName: b.SecretNameOrDefault(), DefaultMode: &mode}
	if optional {
		src.Optional = &optional
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{Secret: src}})
}

// volumeFor names the pod volume for the binding's Secret and says whether the
// pod has it already (from an earlier invocation). A volume under the
// preferred name that is not this Secret is left alone and the hashed name is
// used instead; ok is false when both names are taken by other volumes.
func volumeFor(pod *corev1.Pod, b *stsbindv1.IAMRoleBinding) (name string, exists, ok bool) {
	secret := b.SecretNameOrDefault()
	for _, name := range [2]string{VolumeName(b.Name), hashedVolumeName(b.Name)} {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
		if i < 0 {
			return name, false, true
		}
		if s := pod.Spec.Volumes[i].Secret; s != nil && s.SecretName == secret {
			return name, true, true
		}
	}
	return "", false, false
}

// VolumeName is the pod volume of a binding's Secret: stsbind-<binding>, or a
// shortened name with a hash when that is not a valid volume name (longer
// than 63 characters, or a binding name with dots).
func VolumeName(binding string) string {
	if len(volumePrefix)+len(binding) <= maxVolumeName && !strings.Contains(binding, ".") {
		return volumePrefix + binding
	}
	return hashedVolumeName(binding)
}

// hashedVolumeName is stsbind-<prefix of binding>-<8 hex digits of its SHA-256>.
func hashedVolumeName(binding string) string {
	sum := sha256.Sum256([]byte(binding))
	suffix := hex.EncodeToString(sum[:4])
	stem := strings.ReplaceAll(binding, ".", "-")
	if max := maxVolumeName - len(volumePrefix) - 1 - len(suffix); len(stem) > max {
		stem = stem[:max]
	}
	return volumePrefix + strings.TrimRight(stem, "-") + "-" + suffix
}

// addMount mounts the volume read-only at dir unless the container already
// mounts something else there, and reports whether the container mounts the
// volume at dir. Never subPath: those never see the refreshed Secret.
func addMount(c *corev1.Container, vol, dir string) bool {
	for _, m := range c.VolumeMounts {
		if strings.TrimSuffix(m.MountPath, "/") == dir {
			return m.Name == vol
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: dir, ReadOnly: true})
	return true
}
