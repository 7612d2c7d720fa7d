package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition reasons of a ClusterSTSProvider, and of the bindings it refuses.
const (
	// ReasonProviderAccepted: the provider is usable.
	ReasonProviderAccepted = "Accepted"
	// ReasonAudienceAcceptedByAPIServer: tokens with the provider's audience
	// authenticate at this cluster's API server, so none is ever sent to STS.
	ReasonAudienceAcceptedByAPIServer = "AudienceAcceptedByAPIServer"
)

// ClusterSTSProviderSpec is what the cluster admin decides for every binding
// that uses the provider: where tokens go, with which audience, and which
// namespaces may ask for which roles.
// +kubebuilder:validation:XValidation:rule="!has(self.minSessionDuration) || !has(self.maxSessionDuration) || !self.minSessionDuration.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || !self.maxSessionDuration.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self.minSessionDuration) <= duration(self.maxSessionDuration)",fieldPath=".minSessionDuration",message="minSessionDuration must not be longer than maxSessionDuration"
type ClusterSTSProviderSpec struct {
	// region is the AWS region of the STS endpoint. Default: the controller's
	// --default-region.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+(-[a-z0-9]+)*$')",message="region must look like eu-west-1: lowercase letters, digits and '-'"
	Region string `json:"region,omitempty"`

	// endpoint is the STS endpoint URL every token of this provider goes to.
	// Default: the regional AWS endpoint. https is the norm; http is accepted
	// for STS-compatible servers on a trusted network.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="endpoint must be an http(s) URL with a host, e.g. https://sts.eu-west-1.amazonaws.com"
	Endpoint string `json:"endpoint,omitempty"`

	// audience is the audience of the ServiceAccount tokens sent to STS; it
	// must match the client ID of the OIDC provider on the IAM side. An
	// audience that this cluster's API server accepts is refused: such a
	// token would be a Kubernetes credential.
	// +optional
	// +kubebuilder:default="sts.amazonaws.com"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.matches('\\\\s')",message="audience must not contain whitespace"
	Audience string `json:"audience,omitempty"`

	// namespaceSelector selects the namespaces whose bindings may use this
	// provider, by the namespaces' labels (kubernetes.io/metadata.name holds
	// each namespace's name). Required: an empty selector ({}) means every
	// namespace, and says so.
	// +required
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`

	// allowedRoleArns are the role ARNs bindings may ask for. "*" matches any
	// run of characters except "/", so it never crosses a role path segment,
	// and "**" any run at all; ${namespace} and ${serviceAccount} stand for
	// the binding's namespace and ServiceAccount, e.g.
	// arn:aws:iam::123456789012:role/k8s/${namespace}/*.
	// Prefer a path per namespace over a name prefix: with "role/${namespace}-*"
	// namespace "team" could ask for the roles of namespace "team-a".
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	AllowedRoleARNs []RoleARNPattern `json:"allowedRoleArns"`

	// minSessionDuration and maxSessionDuration bound the sessionDuration
	// bindings may ask for. Defaults 15m and 12h, STS's own bounds.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="minSessionDuration must be a duration such as 15m or 1h"
	MinSessionDuration string `json:"minSessionDuration,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="maxSessionDuration must be a duration such as 1h or 12h"
	MaxSessionDuration string `json:"maxSessionDuration,omitempty"`

	// rateLimit bounds this provider's STS calls, apart from every other
	// provider's.
	// +optional
	// +kubebuilder:default={}
	RateLimit RateLimit `json:"rateLimit,omitempty"`

	// identity is what the controller presents to STS for this provider's
	// bindings. Default: webIdentity, each binding's ServiceAccount token.
	// Only a webIdentity provider serves bindings in injection mode
	// WebIdentity, whose pods exchange their own tokens.
	// +optional
	Identity *ProviderIdentity `json:"identity,omitempty"`

	// automaticSessionTags puts the session tags kubernetes-namespace,
	// kubernetes-service-account, stsbind-binding and (with --cluster-name)
	// stsbind-cluster on every session the controller starts with AssumeRole
	// or GetFederationToken, for attribute-based access control; the role's
	// trust policy must allow sts:TagSession. AssumeRoleWithWebIdentity takes
	// no tags (they come from the token). Default Enabled.
	// +optional
	// +kubebuilder:default=Enabled
	// +kubebuilder:validation:Enum=Enabled;Disabled
	AutomaticSessionTags string `json:"automaticSessionTags,omitempty"`

	// timeout bounds one STS call. Default 30s.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="timeout must be a duration between 1s and 5m, such as 30s"
	Timeout string `json:"timeout,omitempty"`
}

// ProviderIdentity is the identity a provider uses at STS: exactly one of
// webIdentity and accessKeys.
// +kubebuilder:validation:XValidation:rule="has(self.webIdentity) != has(self.accessKeys)",message="identity must set exactly one of webIdentity and accessKeys"
type ProviderIdentity struct {
	// webIdentity exchanges a token of the binding's ServiceAccount with
	// AssumeRoleWithWebIdentity: IAM must trust this cluster's issuer.
	// +optional
	WebIdentity *WebIdentity `json:"webIdentity,omitempty"`
	// accessKeys signs the calls with an IAM user's long-term access keys,
	// for clusters whose token issuer AWS cannot reach. No ServiceAccount
	// token is minted.
	// +optional
	AccessKeys *AccessKeys `json:"accessKeys,omitempty"`
}

// WebIdentity exchanges ServiceAccount tokens with the provider's audience.
type WebIdentity struct {
	// tokenExpirationSeconds is the lifetime of the ServiceAccount tokens
	// that kubelet projects into the pods of WebIdentity-mode bindings
	// (kubelet renews them at 80% of it). At least 600, kubelet's minimum;
	// default 86400, as the IRSA webhook. The API server may shorten it
	// (--service-account-max-token-expiration). The controller's own tokens
	// for the other modes always last 600 seconds.
	// +optional
	// +kubebuilder:default=86400
	// +kubebuilder:validation:Minimum=600
	// +kubebuilder:validation:Maximum=4294967296
	TokenExpirationSeconds int64 `json:"tokenExpirationSeconds,omitempty"`
}

// KeysOperation is the STS operation a provider calls with access keys.
// +kubebuilder:validation:Enum=AssumeRole;GetFederationToken;GetSessionToken
type KeysOperation string

const (
	// OperationAssumeRole assumes the binding's role as the IAM user.
	OperationAssumeRole KeysOperation = "AssumeRole"
	// OperationGetFederationToken issues a federated user session limited
	// to the binding's sessionPolicy and policyArns.
	OperationGetFederationToken KeysOperation = "GetFederationToken"
	// OperationGetSessionToken issues temporary credentials of the IAM user
	// itself, with all of its permissions.
	OperationGetSessionToken KeysOperation = "GetSessionToken"
)

// AccessKeys names an IAM user's keys and the operation they are used with.
type AccessKeys struct {
	// secretName is a Secret in the operator's own namespace (never a
	// tenant's) holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. It is
	// read when credentials are issued, so a rotated key is used at once.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a DNS subdomain: lowercase letters, digits, '-' and '.'"
	SecretName string `json:"secretName"`
	// operation is AssumeRole (the binding's roleArn, default),
	// GetFederationToken (no role: the binding's sessionPolicy or policyArns
	// are all the federated user may do) or GetSessionToken (no role: the
	// IAM user's own permissions, for every binding the provider serves).
	// +optional
	// +kubebuilder:default=AssumeRole
	Operation KeysOperation `json:"operation,omitempty"`
}

// RoleARNPattern is a role ARN in which "*" matches any run of characters
// but "/", "**" any run, and ${namespace} and ${serviceAccount} are
// substituted.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule="self.matches('^arn:[a-z*][a-z0-9*-]{0,31}:iam::([0-9]{12}|[*])?:role/[!-~]+$')",message="each allowedRoleArns entry must be a role ARN pattern such as arn:aws:iam::123456789012:role/${namespace}/*"
// +kubebuilder:validation:XValidation:rule="!self.replace('${namespace}', 'x').replace('${serviceAccount}', 'x').contains('${')",message="allowedRoleArns may substitute only ${namespace} and ${serviceAccount}"
type RoleARNPattern string

// RateLimit bounds the STS calls of one provider.
type RateLimit struct {
	// qps is the steady rate of STS calls per second. Default 100.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	QPS int32 `json:"qps,omitempty"`
	// burst is how many calls may go above qps at once. Default 200.
	// +optional
	// +kubebuilder:default=200
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Burst int32 `json:"burst,omitempty"`
	// namespaceQPS is the steady rate any one namespace may use, so that
	// one namespace's thousands of due bindings never hold back another
	// namespace's. Default: half of qps.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	NamespaceQPS int32 `json:"namespaceQPS,omitempty"`
}

// ClusterSTSProviderStatus is what the controller observed.
type ClusterSTSProviderStatus struct {
	// conditions: Ready is True while bindings may use the provider; its
	// reason names the fault otherwise.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// bindings is how many IAMRoleBindings name this provider (the default
	// provider counts the bindings that name none).
	// +optional
	Bindings int32 `json:"bindings"`
}

// ClusterSTSProvider is owned by the cluster admin: it says which STS every
// token of its bindings goes to, with which audience, and which namespaces may
// ask for which roles. Tenants name it from an IAMRoleBinding's
// spec.providerRef; they cannot change where their tokens go.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=csp,categories=stsbind
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="Region",type=string,JSONPath=`.spec.region`
// +kubebuilder:printcolumn:name="Audience",type=string,JSONPath=`.spec.audience`
// +kubebuilder:printcolumn:name="Bindings",type=integer,JSONPath=`.status.bindings`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterSTSProvider struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ClusterSTSProviderSpec `json:"spec"`
	// +optional
	Status ClusterSTSProviderStatus `json:"status,omitempty"`
}

// ClusterSTSProviderList is a list of ClusterSTSProviders.
// +kubebuilder:object:root=true
type ClusterSTSProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSTSProvider `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterSTSProvider{}, &ClusterSTSProviderList{})
}
