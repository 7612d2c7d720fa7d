package credentials

import "slices"

// sourceVars are the environment variables by which an AWS SDK finds
// credentials, or a profile or file that holds them. A container that sets
// one of them has a credential source of its own: the webhook adds no AWS_*
// variable to it, and the missed-pods report does not count it.
var sourceVars = [...]string{
	KeyAccessKeyID, KeySecretAccessKey, KeySessionToken,
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE",
	"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
	// IRSA (the EKS pod identity webhook) or a pod's own web identity.
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	// EKS Pod Identity, ECS, or another credentials endpoint.
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
}

// IsSourceVar tells whether name is one of those variables.
func IsSourceVar(name string) bool {
	return slices.Contains(sourceVars[:], name)
}
