package webhook

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// credentialSourceVars are the variables by which an AWS SDK or the AWS CLI
// finds credentials, or a profile or file that holds them. A container that
// sets any of them otherwise than stsbind would already has a source:
// stsbind adds no AWS_* variable to it, since in every SDK's chain one source
// would silently win over the other (static keys over credential_process,
// web identity over the container endpoint, ...), and which one differs
// between SDKs.
var credentialSourceVars = [...]string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE",
	EnvConfigFile, "AWS_SHARED_CREDENTIALS_FILE",
	// IRSA (the EKS pod identity webhook) or a pod's own web identity.
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	// EKS Pod Identity, ECS, or another credentials endpoint.
	EnvFullURI, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", EnvAuthToken, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
}

func isCredentialSourceVar(name string) bool {
	return slices.Contains(credentialSourceVars[:], name)
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
