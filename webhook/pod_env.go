package webhook

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// isCredentialSourceVar: name is a variable by which an AWS SDK or the AWS
// CLI finds credentials, or a profile or file that holds them
// (credentials.IsSourceVar). A container that sets any of them otherwise
// than stsbind would already has a source:
// stsbind adds no AWS_* variable to it, since in every SDK's chain one source
// would silently win over the other (static keys over credential_process,
// web identity over the container endpoint, ...), and which one differs
// between SDKs.
func isCredentialSourceVar(name string) bool {
	return credentials.IsSourceVar(name)
}

// EnvFromNames holds, per container name, the AWS_* variables its envFrom
// ConfigMaps and Secrets set as they stood at admission (the webhook reads
// them; kubelet resolves envFrom only when it starts the container, and
// env wins over envFrom, so a variable stsbind set would hide one of these).
type EnvFromNames map[string][]string

// ownSource names the variable by which container c already has credentials
// of its own, or is empty. ours are the variables stsbind sets for the
// default binding: a variable equal to one of them is stsbind's from an
// earlier invocation, not the pod's.
func ownSource(c *corev1.Container, ours []corev1.EnvVar, fromEnvFrom []string) string {
	for i := range c.Env {
		v := &c.Env[i]
		if isCredentialSourceVar(v.Name) && !slices.ContainsFunc(ours, func(o corev1.EnvVar) bool { return equality.Semantic.DeepEqual(o, *v) }) {
			return v.Name
		}
	}
	for _, name := range fromEnvFrom {
		if isCredentialSourceVar(name) {
			return name + " (from envFrom)"
		}
	}
	return ""
}

// removeEnv drops the variables of c equal to one of vars: stsbind's own,
// from an earlier invocation, in a container that meanwhile got a source of
// its own (another webhook, such as IRSA's, ran after stsbind).
func removeEnv(c *corev1.Container, vars []corev1.EnvVar) {
	c.Env = slices.DeleteFunc(c.Env, func(v corev1.EnvVar) bool {
		return slices.ContainsFunc(vars, func(o corev1.EnvVar) bool { return equality.Semantic.DeepEqual(o, v) })
	})
	if len(c.Env) == 0 {
		c.Env = nil
	}
}

// setsRegion reports whether the container sets a region of its own.
func setsRegion(c *corev1.Container, fromEnvFrom []string) bool {
	return hasEnv(c, EnvRegion) || hasEnv(c, EnvDefaultRegion) ||
		slices.Contains(fromEnvFrom, EnvRegion) || slices.Contains(fromEnvFrom, EnvDefaultRegion)
}

// mayYieldAWSNames reports whether an envFrom entry with this prefix can set
// a variable named AWS_*.
func mayYieldAWSNames(prefix string) bool {
	return strings.HasPrefix("AWS_", prefix) || strings.HasPrefix(prefix, "AWS_")
}

// addEnv points container c at the default binding's credentials and
// region, unless c already has credentials of its own: then it gets no AWS_*
// variable, and stsbind's own from an earlier invocation are taken out again.
func (m *mutation) addEnv(c *corev1.Container, p *plan, dir string) {
	var buf [len(envCredentialKeys)]corev1.EnvVar
	ours := m.credentialVars(buf[:0], p, dir)
	fromEnvFrom := m.envFrom[c.Name]
	if src := ownSource(c, ours, fromEnvFrom); src != "" {
		removeEnv(c, ours)
		m.note("container %s sets %s: it keeps its own AWS credentials and gets no AWS_* variable from binding %s", c.Name, src, p.b.Name)
		return
	}
	for _, v := range ours {
		setEnv(c, v)
	}
	region := p.b.Spec.Region
	if region == "" {
		region = m.opts.DefaultRegion
	}
	// The two region variables go together: SDKs differ in which one wins.
	if region != "" && !setsRegion(c, fromEnvFrom) {
		c.Env = append(c.Env,
			corev1.EnvVar{Name: EnvRegion, Value: region},
			corev1.EnvVar{Name: EnvDefaultRegion, Value: region})
	}
}

// credentialVars appends to vars the variables that give a container the
// binding's credentials in the plan's mode.
func (m *mutation) credentialVars(vars []corev1.EnvVar, p *plan, dir string) []corev1.EnvVar {
	switch p.mode {
	case stsbindv1.InjectionFiles:
		vars = append(vars, corev1.EnvVar{Name: EnvConfigFile, Value: dir + "/" + credentials.KeyConfigFile})
	case stsbindv1.InjectionEndpoint:
		vars = append(vars,
			corev1.EnvVar{Name: EnvFullURI, Value: endpointURL(p.b.Name, m.opts.sidecarPort())},
			corev1.EnvVar{Name: EnvAuthToken, Value: m.token})
	case stsbindv1.InjectionEnv:
		// All three from one Secret: a key of one session with a token of
		// another works nowhere.
		secret := p.b.SecretNameOrDefault()
		for _, k := range envCredentialKeys {
			vars = append(vars, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: k},
			}})
		}
	}
	return vars
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
