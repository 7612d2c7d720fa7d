package webhook

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/credserver"
)

// SidecarName is the Endpoint-mode init container (a native sidecar).
const SidecarName = "stsbind-credentials"

// DefaultSidecarPort is the sidecar's loopback port unless configured.
const DefaultSidecarPort int32 = 9911

// sidecarBinary is the small credentials server shipped in the operator image.
const sidecarBinary = "/credentials-server"

func (o Options) sidecarPort() int32 {
	if o.Sidecar.Port == 0 {
		return DefaultSidecarPort
	}
	return o.Sidecar.Port
}

func (o Options) newToken() string {
	if o.NewToken != nil {
		return o.NewToken()
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// endpointURL is what AWS_CONTAINER_CREDENTIALS_FULL_URI names: loopback by
// address, the only host older CLIs and boto3 accept besides localhost.
func endpointURL(binding string, port int32) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s%s", port, credserver.PathPrefix, binding)
}

// ensureSidecar puts the credentials server first among the init containers
// when an Endpoint binding is matched, and returns the pod's token. A sidecar
// from an earlier invocation is kept as it is, token included.
func ensureSidecar(pod *corev1.Pod, matched []*stsbindv1.IAMRoleBinding, opts Options) string {
	var endpoint []string
	for _, b := range matched {
		if b.InjectionModeOrDefault() == stsbindv1.InjectionEndpoint {
			endpoint = append(endpoint, b.Name)
		}
	}
	if len(endpoint) == 0 {
		return ""
	}
	if i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarName }); i >= 0 {
		for _, e := range pod.Spec.InitContainers[i].Env {
			if e.Name == credserver.EnvAuthToken {
				return e.Value
			}
		}
		return ""
	}
	token := opts.newToken()
	listen := "--listen=127.0.0.1:" + strconv.Itoa(int(opts.sidecarPort()))
	args := []string{listen, "--dir=" + credentials.MountRoot}
	for _, name := range endpoint {
		args = append(args, "--binding="+name)
	}
	sidecar := corev1.Container{
		Name:    SidecarName,
		Image:   opts.Sidecar.Image,
		Command: []string{sidecarBinary},
		Args:    args,
		Env:     []corev1.EnvVar{{Name: credserver.EnvAuthToken, Value: token}},
		// A native sidecar: it runs beside the app and does not keep a Job alive.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		// Later init containers start once every binding's credentials are served.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{sidecarBinary, "--probe", listen}}},
			PeriodSeconds:    1,
			TimeoutSeconds:   2,
			FailureThreshold: 300,
		},
		Resources: opts.Sidecar.Resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			RunAsGroup:               ptr.To[int64](65532),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	pod.Spec.InitContainers = append([]corev1.Container{sidecar}, pod.Spec.InitContainers...)
	return token
}

// injectEndpoint mounts an Endpoint binding's Secret into the sidecar only and,
// for the default binding, points the selected containers at the sidecar.
func injectEndpoint(pod *corev1.Pod, b *stsbindv1.IAMRoleBinding, isDefault bool, opts Options, token string) {
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarName })
	if i < 0 || token == "" {
		return // a foreign container of that name: leave the pod as it is
	}
	vol, volExists, ok := volumeFor(pod, b)
	if !ok {
		return
	}
	if addMount(&pod.Spec.InitContainers[i], vol, credentials.MountDir(b.Name)) && !volExists {
		addSecretVolume(pod, vol, b)
	}
	if !isDefault {
		return
	}
	region := b.Spec.Region
	if region == "" {
		region = opts.DefaultRegion
	}
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for j := range cs {
			if c := &cs[j]; c.Name != SidecarName && selects(b, c.Name) {
				addEnv(c, b, stsbindv1.InjectionEndpoint, "", region, opts, token)
			}
		}
	}
}
