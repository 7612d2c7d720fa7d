// Package webhook holds the mutating pod webhook: a pure mutation function and
// the admission wiring around it.
package webhook

import (
	"fmt"
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
	// Requests of the sidecar container, for the resources the pod's own
	// containers request; it is limited to the same amounts on the resources
	// they limit (sidecarResources).
	Requests corev1.ResourceList
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

// AnnotationNotes on a pod says what the webhook left out on purpose and why.
const AnnotationNotes = "stsbind.dev/injection-notes"

const (
	volumePrefix = "stsbind-"
	// secretFileMode lets a container running as any user read the files.
	secretFileMode int32 = 0o444
	maxVolumeName        = 63
)

// envCredentialKeys are set together in Env mode, each from the Secret key of
// the same name.
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
// written to that annotation. Whatever the mutation left out on purpose (a
// container with credentials of its own, a binding that cannot issue
// credentials, Endpoint in a hostNetwork pod) is said in the
// stsbind.dev/injection-notes annotation.
func mutatePod(pod *corev1.Pod, bindings []stsbindv1.IAMRoleBinding, opts Options) {
	mutatePodWith(pod, bindings, opts, nil)
}

// mutatePodWith is mutatePod for a pod whose envFrom sources were read:
// envFrom names the AWS_* variables they set, per container.
func mutatePodWith(pod *corev1.Pod, bindings []stsbindv1.IAMRoleBinding, opts Options, envFrom EnvFromNames) {
	if optedOut(pod) {
		return
	}
	sa := serviceAccountOf(pod)
	var buf [4]plan // one binding per ServiceAccount is the norm
	plans := buf[:0]
	for i := range bindings {
		b := &bindings[i]
		if appliesTo(b, pod, sa) {
			plans = append(plans, plan{b: b})
		}
	}
	if len(plans) == 0 {
		return
	}
	if len(plans) > 1 {
		slices.SortFunc(plans, func(a, b plan) int { return strings.Compare(a.b.Name, b.b.Name) })
	}
	def := defaultBinding(pod, plans)
	m := mutation{pod: pod, opts: opts, envFrom: envFrom}
	for i := range plans {
		m.decide(&plans[i], plans[i].b == def)
	}
	m.token = ensureSidecar(pod, plans, opts)
	for i := range plans {
		m.inject(&plans[i], plans[i].b == def)
	}
	m.writeNotes()
}

// plan is how one matched binding reaches the pod.
type plan struct {
	b *stsbindv1.IAMRoleBinding
	// mode is the binding's, except Endpoint in a hostNetwork pod: Files.
	mode stsbindv1.InjectionMode
	// stuck is the reason the binding cannot issue credentials until someone
	// acts (stuckReason); its Secret volume is then optional.
	stuck string
}

// mutation is one pod's mutation under way.
type mutation struct {
	pod     *corev1.Pod
	opts    Options
	envFrom EnvFromNames
	token   string
	notes   []string
}

func (m *mutation) note(format string, args ...any) {
	m.notes = append(m.notes, fmt.Sprintf(format, args...))
}

// decide fills in the plan's mode and stuck reason, with their notes.
func (m *mutation) decide(p *plan, isDefault bool) {
	p.mode = p.b.InjectionModeOrDefault()
	if p.mode == stsbindv1.InjectionEndpoint && m.pod.Spec.HostNetwork {
		// Every hostNetwork pod of the node shares one loopback: a second
		// pod's sidecar cannot listen on the port (it crashloops and its app
		// never starts) and the first one's is reachable from the whole node.
		p.mode = stsbindv1.InjectionFiles
		m.note("binding %s: Files instead of Endpoint, because a hostNetwork pod shares the node's loopback (the image needs sh and cat for credential_process)", p.b.Name)
	}
	// A WebIdentity binding has no Secret to wait for.
	if p.stuck = stuckReason(p.b); p.stuck != "" && usesSecret(p.b) {
		if p.mode == stsbindv1.InjectionEnv && isDefault {
			m.note("binding %s is not Ready (%s): containers that take its variables wait for its Secret, since Env values are fixed when a container starts", p.b.Name, p.stuck)
		} else {
			m.note("binding %s is not Ready (%s): its Secret is mounted optional, so containers start without its credentials and kubelet adds them at its next sync of the pod (about a minute) once the binding is Ready", p.b.Name, p.stuck)
		}
	}
}

// writeNotes puts the notes on the pod; the same input gives the same notes,
// so a reinvocation changes nothing.
func (m *mutation) writeNotes() {
	if len(m.notes) == 0 {
		return
	}
	m.pod.Annotations[AnnotationNotes] = strings.Join(m.notes, "; ")
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
func defaultBinding(pod *corev1.Pod, matched []plan) *stsbindv1.IAMRoleBinding {
	if pod.Annotations == nil {
		pod.Annotations = make(map[string]string, 1)
	}
	if name, ok := pod.Annotations[stsbindv1.AnnotationDefaultBinding]; ok {
		for _, p := range matched {
			if p.b.Name == name {
				return p.b
			}
		}
		return nil
	}
	pod.Annotations[stsbindv1.AnnotationDefaultBinding] = matched[0].b.Name
	return matched[0].b
}

func (m *mutation) inject(p *plan, isDefault bool) {
	switch p.mode {
	case stsbindv1.InjectionEndpoint:
		m.injectEndpoint(p, isDefault)
		return
	case stsbindv1.InjectionWebIdentity:
		injectWebIdentity(m.pod, p.b, isDefault, m.opts)
		return
	}
	pod, b := m.pod, p.b
	dir := credentials.MountDir(b.Name)
	vol, volExists := "", false
	if p.mode == stsbindv1.InjectionFiles || !isDefault {
		var ok bool
		if vol, volExists, ok = volumeFor(pod, b); !ok && p.mode == stsbindv1.InjectionFiles {
			return // AWS_CONFIG_FILE would name a file that is not there
		}
	}
	mounted := false
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
				m.addEnv(c, p, dir)
			}
		}
	}
	if mounted && !volExists {
		addSecretVolume(pod, vol, b, p.stuck != "")
	}
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
