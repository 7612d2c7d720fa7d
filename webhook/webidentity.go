package webhook

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// Environment variables of WebIdentity mode: those the IRSA webhook sets,
// plus the session name and the provider's STS endpoint.
const (
	EnvRoleARN              = "AWS_ROLE_ARN"
	EnvWebIdentityTokenFile = "AWS_WEB_IDENTITY_TOKEN_FILE"
	EnvRoleSessionName      = "AWS_ROLE_SESSION_NAME"
	// EnvEndpointURLSTS is honoured by aws-sdk-go-v2, botocore 1.43 and AWS
	// CLI 1.45; Debian's botocore 1.29 (boto3 1.26), AWS CLI 2.9 and
	// AsyncAws 1.18 ignore it and send the token to AWS STS (see README).
	EnvEndpointURLSTS = "AWS_ENDPOINT_URL_STS"
	// EnvSTSRegionalEndpoints makes SDKs that ignore EnvEndpointURLSTS use
	// their region's AWS STS rather than the global endpoint, which
	// botocore 1.29 defaults to (as the IRSA webhook sets it).
	EnvSTSRegionalEndpoints = "AWS_STS_REGIONAL_ENDPOINTS"
)

// WebIdentityTokenPath is the projected token's file in the binding's
// directory, credentials.MountDir(binding).
const WebIdentityTokenPath = "token"

// WebIdentityTarget is what a WebIdentity binding's provider says about the
// token its pods get: all of it the admin's, none of it the tenant's.
type WebIdentityTarget struct {
	// Audience of the projected token: the provider's.
	Audience string
	// ExpirationSeconds of the projected token, at least 600.
	ExpirationSeconds int64
	// STSEndpoint is where the pods' SDKs send the token
	// (AWS_ENDPOINT_URL_STS): the provider's endpoint, or the regional AWS
	// endpoint of the provider's region. Empty: the variable is not set.
	STSEndpoint string
}

// usesSecret reports whether the binding's pods read its Secret: every mode
// but WebIdentity, which has none.
func usesSecret(b *stsbindv1.IAMRoleBinding) bool {
	return b.InjectionModeOrDefault() != stsbindv1.InjectionWebIdentity
}

// injectWebIdentity projects the binding's token into the selected
// containers at credentials.MountDir(binding)/token and, for the default
// binding, points the SDKs at it. A binding without a target (its provider
// does not permit it, or it was not looked up) gets nothing: no token ever
// goes out with an audience or a role the provider has not allowed.
func injectWebIdentity(pod *corev1.Pod, b *stsbindv1.IAMRoleBinding, isDefault bool, opts Options) {
	t, ok := opts.WebIdentity[b.Name]
	if !ok || t.Audience == "" {
		return
	}
	vol, volExists, ok := tokenVolumeFor(pod, b, t)
	if !ok {
		return
	}
	dir := credentials.MountDir(b.Name)
	region := cmp.Or(b.Spec.Region, opts.DefaultRegion)
	mounted := false
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if !selects(b, c.Name) || c.Name == SidecarName {
				continue
			}
			if !addMount(c, vol, dir) {
				continue // something else is mounted there: no variable names a file that is not the token
			}
			mounted = true
			if isDefault {
				addWebIdentityEnv(c, b, t, dir+"/"+WebIdentityTokenPath, region)
			}
		}
	}
	if mounted && !volExists {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name: vol,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience:          t.Audience,
					ExpirationSeconds: ptr.To(max(t.ExpirationSeconds, stsbindv1.MinTokenExpirationSeconds)),
					Path:              WebIdentityTokenPath,
				}}},
			}},
		})
	}
}

// addWebIdentityEnv sets the variables the SDKs' web identity providers
// read. Role and token file go together: a container that sets either has a
// web identity of its own and keeps it, with its session name and STS
// endpoint.
func addWebIdentityEnv(c *corev1.Container, b *stsbindv1.IAMRoleBinding, t WebIdentityTarget, tokenFile, region string) {
	if !hasEnv(c, EnvRoleARN) && !hasEnv(c, EnvWebIdentityTokenFile) {
		c.Env = append(c.Env,
			corev1.EnvVar{Name: EnvRoleARN, Value: b.Spec.RoleARN},
			corev1.EnvVar{Name: EnvWebIdentityTokenFile, Value: tokenFile})
		setEnv(c, corev1.EnvVar{Name: EnvRoleSessionName, Value: b.SessionNameOrDefault()})
		if t.STSEndpoint != "" {
			setEnv(c, corev1.EnvVar{Name: EnvEndpointURLSTS, Value: t.STSEndpoint})
		}
		setEnv(c, corev1.EnvVar{Name: EnvSTSRegionalEndpoints, Value: "regional"})
	}
	if region != "" && !hasEnv(c, EnvRegion) && !hasEnv(c, EnvDefaultRegion) {
		c.Env = append(c.Env,
			corev1.EnvVar{Name: EnvRegion, Value: region},
			corev1.EnvVar{Name: EnvDefaultRegion, Value: region})
	}
}

// tokenVolumeFor names the pod volume of the binding's projected token and
// says whether the pod has it already (from an earlier invocation): a
// projected volume of exactly that token. A volume of the name that is
// anything else is left alone and the hashed name is tried; ok is false
// when both are taken.
func tokenVolumeFor(pod *corev1.Pod, b *stsbindv1.IAMRoleBinding, t WebIdentityTarget) (name string, exists, ok bool) {
	for _, name := range [2]string{VolumeName(b.Name), hashedVolumeName(b.Name)} {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
		if i < 0 {
			return name, false, true
		}
		if isTokenVolume(&pod.Spec.Volumes[i], t.Audience) {
			return name, true, true
		}
	}
	return "", false, false
}

func isTokenVolume(v *corev1.Volume, audience string) bool {
	p := v.Projected
	if p == nil || len(p.Sources) != 1 {
		return false
	}
	s := p.Sources[0].ServiceAccountToken
	return s != nil && s.Audience == audience && s.Path == WebIdentityTokenPath
}
