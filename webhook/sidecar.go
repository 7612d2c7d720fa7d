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
// The startup probe waits for the credentials of every Endpoint binding
// except the stuck ones, whose Secret may never come.
func ensureSidecar(pod *corev1.Pod, plans []plan, opts Options) string {
	if !slices.ContainsFunc(plans, func(p plan) bool { return p.mode == stsbindv1.InjectionEndpoint }) {
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
	for _, p := range plans {
		if p.mode == stsbindv1.InjectionEndpoint && p.stuck == "" {
			args = append(args, "--binding="+p.b.Name)
		}
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
		Resources: sidecarResources(pod, opts.Sidecar.Requests),
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
func (m *mutation) injectEndpoint(p *plan, isDefault bool) {
	pod := m.pod
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarName })
	if i < 0 || m.token == "" {
		return // a foreign container of that name: leave the pod as it is
	}
	vol, volExists, ok := volumeFor(pod, p.b)
	if !ok {
		return
	}
	if addMount(&pod.Spec.InitContainers[i], vol, credentials.MountDir(p.b.Name)) && !volExists {
		addSecretVolume(pod, vol, p.b, p.stuck != "")
	}
	if !isDefault {
		return
	}
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for j := range cs {
			if c := &cs[j]; c.Name != SidecarName && selects(p.b, c.Name) {
				m.addEnv(c, p, "")
			}
		}
	}
}

// sidecarResources gives the sidecar the pod's own pattern, so that adding
// it never changes the pod's QoS class or whether a ResourceQuota admits it:
// it requests a resource (at the configured amount) only when one of the
// pod's containers requests or limits it, and limits it, to the same
// amount, only when one of them limits it. A Guaranteed pod therefore stays
// Guaranteed, a BestEffort one BestEffort, and a pod in a namespace whose
// quota covers limits.cpu carries a CPU limit on every container. A pod with
// pod-level resources budgets the sidecar within them: it sets none.
func sidecarResources(pod *corev1.Pod, requests corev1.ResourceList) corev1.ResourceRequirements {
	var r corev1.ResourceRequirements
	if pod.Spec.Resources != nil {
		return r
	}
	for name, q := range requests {
		requested, limited := false, false
		for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for i := range cs {
				if cs[i].Name == SidecarName {
					continue
				}
				_, req := cs[i].Resources.Requests[name]
				_, lim := cs[i].Resources.Limits[name]
				requested = requested || req || lim
				limited = limited || lim
			}
		}
		if requested {
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = q
		}
		if limited {
			if r.Limits == nil {
				r.Limits = corev1.ResourceList{}
			}
			r.Limits[name] = q
		}
	}
	return r
}
