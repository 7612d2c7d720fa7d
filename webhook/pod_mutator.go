// Package webhook holds the mutating pod webhook: a pure mutation function and
// the admission wiring around it.
package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// Options tune the mutation.
type Options struct {
	// DefaultRegion is the region for bindings without spec.region (the
	// controller's --default-region). Empty: no region variables for them.
	DefaultRegion string
	// Sidecar configures the Endpoint-mode credentials server.
	Sidecar SidecarOptions
	// NewToken returns a fresh per-pod token for the Endpoint sidecar;
	// default 32 random bytes, hex. Tests pin it.
	NewToken func() string
	// WebIdentity holds, by binding name, the token of each WebIdentity
	// binding its provider permits; the PodDefaulter fills it per pod. A
	// WebIdentity binding without an entry gets nothing.
	WebIdentity map[string]WebIdentityTarget
}

// SidecarOptions configure the Endpoint-mode sidecar.
type SidecarOptions struct {
	// Image holds /credentials-server: the operator's own image.
	Image string
	// Port is the loopback port it serves on; default 9911.
	Port int32
	// Resources of the sidecar container.
	Resources corev1.ResourceRequirements
}

// Environment variables the webhook sets.
const (
	EnvConfigFile    = "AWS_CONFIG_FILE"
	EnvRegion        = "AWS_REGION"
	EnvDefaultRegion = "AWS_DEFAULT_REGION"
	// EnvFullURI and EnvAuthToken point the SDKs at the Endpoint sidecar.
	// Older CLIs and boto3 ignore the _FILE variant of the token.
	EnvFullURI   = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvAuthToken = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
)

const (
	volumePrefix = "stsbind-"
	// secretFileMode lets a container running as any user read the files.
	secretFileMode int32 = 0o444
	maxVolumeName        = 63
)

// envCredentialKeys are set together in Env mode, each from the Secret key of
// the same name: a pod that sets one of them keeps all three its own, since a
// key of one session with a token of another works nowhere.
var envCredentialKeys = [...]string{credentials.KeyAccessKeyID, credentials.KeySecretAccessKey, credentials.KeySessionToken}

// mutatePod hands the pod the credentials of bindings, which are the
// IAMRoleBindings of the pod's namespace (the caller looks them up; others are
// ignored here by ServiceAccount). It changes the pod in place, adds only what
// is missing, and so changes nothing when run twice.
//
// Each Files binding, and each binding that is not the default, gets its
// Secret mounted at credentials.MountDir(binding). The AWS_* variables point at
// the default binding only: the one named by the pod's
// stsbind.dev/default-binding annotation, else the first by name, which is then
// written to that annotation.
func mutatePod(pod *corev1.Pod, bindings []stsbindv1.IAMRoleBinding, opts Options) {
	if optedOut(pod) {
		return
	}
	sa := serviceAccountOf(pod)
	var buf [4]*stsbindv1.IAMRoleBinding // one binding per ServiceAccount is the norm
	matched := buf[:0]
	for i := range bindings {
		b := &bindings[i]
		if appliesTo(b, pod, sa) {
			matched = append(matched, b)
		}
	}
	if len(matched) == 0 {
		return
	}
	if len(matched) > 1 {
		slices.SortFunc(matched, func(a, b *stsbindv1.IAMRoleBinding) int { return strings.Compare(a.Name, b.Name) })
	}
	def := defaultBinding(pod, matched)
	token := ensureSidecar(pod, matched, opts)
	for _, b := range matched {
		injectBinding(pod, b, b == def, opts, token)
	}
}

// appliesTo reports whether binding b hands credentials to the pod, whose
// ServiceAccount is sa.
func appliesTo(b *stsbindv1.IAMRoleBinding, pod *corev1.Pod, sa string) bool {
	return b.Spec.ServiceAccountName == sa && handledMode(b.InjectionModeOrDefault()) && selectsAny(b, pod)
}

// handledMode reports whether the webhook injects bindings of this mode.
func handledMode(m stsbindv1.InjectionMode) bool {
	return m == stsbindv1.InjectionFiles || m == stsbindv1.InjectionEnv || m == stsbindv1.InjectionEndpoint || m == stsbindv1.InjectionWebIdentity
}

// optedOut reports whether the pod carries stsbind.dev/inject: "false".
func optedOut(pod *corev1.Pod) bool {
	v, ok := pod.Annotations[stsbindv1.AnnotationInject]
	if !ok {
		return false
	}
	inject, err := strconv.ParseBool(v)
	return err == nil && !inject
}

// serviceAccountOf is the pod's ServiceAccount; the API server's admission
// plugin fills in "default" for an empty one, but may run after this webhook.
func serviceAccountOf(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	if pod.Spec.DeprecatedServiceAccount != "" {
		return pod.Spec.DeprecatedServiceAccount
	}
	return "default"
}

// defaultBinding picks the binding the AWS_* variables point at. A pod whose
// annotation names a binding not in matched gets no AWS_* variables: pointing
// them at another role instead would hand out permissions nobody chose.
func defaultBinding(pod *corev1.Pod, matched []*stsbindv1.IAMRoleBinding) *stsbindv1.IAMRoleBinding {
	if name, ok := pod.Annotations[stsbindv1.AnnotationDefaultBinding]; ok {
		for _, b := range matched {
			if b.Name == name {
				return b
			}
		}
		return nil
	}
	if pod.Annotations == nil {
		pod.Annotations = make(map[string]string, 1)
	}
	pod.Annotations[stsbindv1.AnnotationDefaultBinding] = matched[0].Name
	return matched[0]
}

func injectBinding(pod *corev1.Pod, b *stsbindv1.IAMRoleBinding, isDefault bool, opts Options, token string) {
	mode := b.InjectionModeOrDefault()
	dir := credentials.MountDir(b.Name)
	switch mode {
	case stsbindv1.InjectionEndpoint:
		injectEndpoint(pod, b, isDefault, opts, token)
		return
	case stsbindv1.InjectionWebIdentity:
		injectWebIdentity(pod, b, isDefault, opts)
		return
	}
	vol, volExists := "", false
	if mode == stsbindv1.InjectionFiles || !isDefault {
		var ok bool
		if vol, volExists, ok = volumeFor(pod, b); !ok && mode == stsbindv1.InjectionFiles {
			return // AWS_CONFIG_FILE would name a file that is not there
		}
	}
	mounted := false
	region := b.Spec.Region
	if region == "" {
		region = opts.DefaultRegion
	}
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if !selects(b, c.Name) || c.Name == SidecarName {
				continue
			}
			if vol != "" && addMount(c, vol, dir) {
				mounted = true
			}
			if isDefault {
				addEnv(c, b, mode, dir, region, opts, "")
			}
		}
	}
	if mounted && !volExists {
		addSecretVolume(pod, vol, b)
	}
}

func addSecretVolume(pod *corev1.Pod, vol string, b *stsbindv1.IAMRoleBinding) {
	mode := secretFileMode
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name: vol,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  b.SecretNameOrDefault(),
			DefaultMode: &mode,
		}},
	})
}

// selects reports whether the binding's container allow-list admits name.
func selects(b *stsbindv1.IAMRoleBinding, name string) bool {
	return len(b.Spec.Injection.Containers) == 0 || slices.Contains(b.Spec.Injection.Containers, name)
}

func selectsAny(b *stsbindv1.IAMRoleBinding, pod *corev1.Pod) bool {
	if len(b.Spec.Injection.Containers) == 0 {
		return len(pod.Spec.Containers)+len(pod.Spec.InitContainers) > 0
	}
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if selects(b, cs[i].Name) {
				return true
			}
		}
	}
	return false
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

func addEnv(c *corev1.Container, b *stsbindv1.IAMRoleBinding, mode stsbindv1.InjectionMode, dir, region string, opts Options, token string) {
	switch mode {
	case stsbindv1.InjectionFiles:
		setEnv(c, corev1.EnvVar{Name: EnvConfigFile, Value: dir + "/" + credentials.KeyConfigFile})
	case stsbindv1.InjectionEndpoint:
		// URI and token go together: a pod that sets either keeps both its own.
		if !hasEnv(c, EnvFullURI) && !hasEnv(c, EnvAuthToken) {
			c.Env = append(c.Env,
				corev1.EnvVar{Name: EnvFullURI, Value: endpointURL(b.Name, opts.sidecarPort())},
				corev1.EnvVar{Name: EnvAuthToken, Value: token})
		}
	case stsbindv1.InjectionEnv:
		if !slices.ContainsFunc(envCredentialKeys[:], func(k string) bool { return hasEnv(c, k) }) {
			secret := b.SecretNameOrDefault()
			for _, k := range envCredentialKeys {
				c.Env = append(c.Env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: k},
				}})
			}
		}
	}
	// The two region variables go together too: SDKs differ in which one wins.
	if region != "" && !hasEnv(c, EnvRegion) && !hasEnv(c, EnvDefaultRegion) {
		c.Env = append(c.Env,
			corev1.EnvVar{Name: EnvRegion, Value: region},
			corev1.EnvVar{Name: EnvDefaultRegion, Value: region})
	}
}

// setEnv adds v unless the container already sets a variable of that name.
func setEnv(c *corev1.Container, v corev1.EnvVar) {
	if !hasEnv(c, v.Name) {
		c.Env = append(c.Env, v)
	}
}

func hasEnv(c *corev1.Container, name string) bool {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return true
		}
	}
	return false
}
