package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InjectionMode says how the webhook hands a binding's credentials to a pod.
// +kubebuilder:validation:Enum=Files;Env;Endpoint;WebIdentity;None
type InjectionMode string

const (
	// InjectionFiles mounts the Secret and points AWS_CONFIG_FILE at a profile
	// whose credential_process re-reads the credentials on every refresh.
	InjectionFiles InjectionMode = "Files"
	// InjectionEnv sets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN from the Secret; values are fixed when a container starts.
	InjectionEnv InjectionMode = "Env"
	// InjectionEndpoint runs a sidecar serving the container-credentials API.
	InjectionEndpoint InjectionMode = "Endpoint"
	// InjectionWebIdentity projects a ServiceAccount token with the
	// provider's audience into the pods and sets AWS_ROLE_ARN and
	// AWS_WEB_IDENTITY_TOKEN_FILE, as the IRSA webhook does: the pod's SDK
	// calls AssumeRoleWithWebIdentity itself. No Secret is written.
	InjectionWebIdentity InjectionMode = "WebIdentity"
	// InjectionNone keeps the Secret up to date but changes no pod.
	InjectionNone InjectionMode = "None"
)

// RestartOnRotation says whether the workloads whose pods hold a binding's
// credentials in environment variables are restarted when they rotate.
// +kubebuilder:validation:Enum=Never;Rollout
type RestartOnRotation string

const (
	// RestartNever leaves the pods alone: Env containers keep the values
	// they started with until they expire.
	RestartNever RestartOnRotation = "Never"
	// RestartRollout rolls out the Deployments, StatefulSets and DaemonSets
	// whose pods hold the replaced credentials.
	RestartRollout RestartOnRotation = "Rollout"
)

// Condition types and reasons of an IAMRoleBinding.
const (
	// ConditionReady is True while the Secret holds valid credentials: for
	// the current spec, or (reason PreviousGenerationServed) for the last spec
	// that worked while the current one fails. In injection mode WebIdentity
	// (reason WebIdentityPermitted), while the provider permits the binding.
	ConditionReady = "Ready"
	// ConditionUpToDate is True when the Secret holds credentials for the
	// current generation (WebIdentity: when the webhook injects it); False,
	// with the latest spec's fault as reason, while it holds another
	// generation's or none.
	ConditionUpToDate = "UpToDate"
	// ConditionIdentityVerified is True when STS GetCallerIdentity confirmed
	// whose credentials the Secret holds, False when the server cannot say.
	ConditionIdentityVerified = "IdentityVerified"

	ReasonCredentialsIssued = "CredentialsIssued"
	ReasonRefreshRetrying   = "RefreshRetrying"
	// ReasonPreviousGenerationServed: the latest spec fails; the Secret
	// keeps serving the credentials of status.servedGeneration.
	ReasonPreviousGenerationServed = "PreviousGenerationServed"
	ReasonServiceAccountNotFound   = "ServiceAccountNotFound"
	ReasonSecretConflict           = "SecretConflict"
	ReasonInvalidSessionPolicy     = "InvalidSessionPolicy"
	ReasonInvalidSpec              = "InvalidSpec"
	ReasonTokenRequestFailed       = "TokenRequestFailed"
	ReasonSTSUnreachable           = "STSUnreachable"
	ReasonSTSError                 = "STSError"

	// Set by the provider checks, the audience check and the write.
	ReasonProviderKeysMissing       = "ProviderKeysMissing"
	ReasonRoleRequired              = "RoleRequired"
	ReasonIdentityVerified          = "Verified"
	ReasonIdentityNotVerified       = "NotVerified"
	ReasonExpiredOnArrival          = "ExpiredOnArrival"
	ReasonSecretWriteFailed         = "SecretWriteFailed"
	ReasonTokenReviewFailed         = "TokenReviewFailed"
	ReasonProviderNotFound          = "ProviderNotFound"
	ReasonProviderNotReady          = "ProviderNotReady"
	ReasonNamespaceNotAllowed       = "NamespaceNotAllowed"
	ReasonRoleNotAllowed            = "RoleNotAllowed"
	ReasonSessionDurationNotAllowed = "SessionDurationNotAllowed"

	// Restart on rotation (events only; status.restart holds the state).
	ReasonRolloutRestarted   = "RolloutRestarted"
	ReasonRolloutDeferred    = "RolloutDeferred"
	ReasonRolloutFailed      = "RolloutFailed"
	ReasonRolloutRefused     = "RolloutRefused"
	ReasonRolloutIneffective = "RolloutIneffective"
	ReasonPodsNotRestartable = "PodsNotRestartable"
	// The admin turned restarts on rotation off (--restart-on-rotation=false).
	ReasonRestartOnRotationDisabled = "RestartOnRotationDisabled"

	// ReasonWebIdentityPermitted: a WebIdentity binding that the provider
	// serves; the pods exchange their own tokens, nothing is issued here.
	ReasonWebIdentityPermitted = "WebIdentityPermitted"
	// ReasonModeNotSupported: the provider cannot serve the binding's
	// injection mode (WebIdentity with an accessKeys provider).
	ReasonModeNotSupported = "ModeNotSupported"
	// ReasonExchangedInPod: IdentityVerified is Unknown in WebIdentity mode:
	// the controller holds no credentials to ask GetCallerIdentity with.
	ReasonExchangedInPod = "ExchangedInPod"
)

// The condition that says whether the ServiceAccount's pods got the
// credentials, and its reasons.
const (
	// ConditionPodsInjected is True when every running pod of the
	// ServiceAccount has the binding's Secret, False when some run without it
	// (admitted while the webhook was unreachable, or started before the
	// binding existed). Absent for modes None and WebIdentity.
	ConditionPodsInjected = "PodsInjected"

	ReasonAllPodsInjected        = "AllPodsInjected"
	ReasonPodsWithoutCredentials = "PodsWithoutCredentials"
)

// Labels and annotations stsbind puts on the Secrets it writes and the pods it mutates.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	LabelManagedByValue = "stsbind"
	LabelBinding        = "stsbind.dev/binding"

	AnnotationExpiration = "stsbind.dev/expiration"
	AnnotationIssuedAt   = "stsbind.dev/issued-at"
	AnnotationSpecHash   = "stsbind.dev/spec-hash"
	// AnnotationDataHash is the SHA-256 of the data as the controller wrote it.
	AnnotationDataHash = "stsbind.dev/data-hash"

	// AnnotationInject set to "false" on a pod opts it out of injection.
	AnnotationInject = "stsbind.dev/inject"
	// AnnotationDefaultBinding on a pod names the binding the AWS_* variables point at.
	AnnotationDefaultBinding = "stsbind.dev/default-binding"

	// AnnotationRestartPrefix, followed by the binding's name, is the pod
	// template annotation a restart on rotation writes: its value is the
	// credentials' identity (RestartStatus.Credentials), never a time, so
	// that two rotations always differ and a repeated restart writes the
	// same value again.
	AnnotationRestartPrefix = "restart.stsbind.dev/"

	// SecretType is the type of every Secret stsbind writes.
	SecretType = "stsbind.dev/aws-credentials"
)

// DefaultAudience applies to providers built in code, before the API
// server's defaulting.
const DefaultAudience = "sts.amazonaws.com"

// IAMRoleBindingSpec binds a ServiceAccount of this namespace to an IAM role.
// +kubebuilder:validation:XValidation:rule="!has(self.chainedRole) || (has(self.sessionDuration) && self.sessionDuration.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self.sessionDuration) <= duration('1h'))",fieldPath=".sessionDuration",message="AWS limits a chained role session to 1 hour: sessionDuration must be at most 1h with chainedRole"
// +kubebuilder:validation:XValidation:rule="!has(self.chainedRole) || !has(self.chainedRole.transitiveTagKeys) || self.chainedRole.transitiveTagKeys.all(k, k in ['kubernetes-namespace', 'kubernetes-service-account', 'stsbind-binding', 'stsbind-cluster'] || (has(self.chainedRole.sessionTags) && k in self.chainedRole.sessionTags))",fieldPath=".chainedRole.transitiveTagKeys",message="each transitiveTagKeys entry must be a session tag of the chained role (its own or an automatic one)"
// Where the ServiceAccount's tokens go, and with which audience, is the
// provider's: a binding cannot choose it.
// +kubebuilder:validation:XValidation:rule="!has(self.refreshBefore) || !has(self.sessionDuration) || !self.refreshBefore.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || !self.sessionDuration.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self.refreshBefore) < duration(self.sessionDuration) - duration('5m')",fieldPath=".refreshBefore",message="refreshBefore must be shorter than sessionDuration minus 5m"
// In WebIdentity mode the pod's SDK calls AssumeRoleWithWebIdentity with
// only the role, the token and the session name: what the SDKs cannot send
// is refused here rather than silently dropped.
// +kubebuilder:validation:XValidation:rule="!has(self.injection) || !has(self.injection.mode) || self.injection.mode != 'WebIdentity' || has(self.roleArn)",fieldPath=".roleArn",message="injection mode WebIdentity needs roleArn: the pod's SDK assumes that role with its own token"
// +kubebuilder:validation:XValidation:rule="!has(self.injection) || !has(self.injection.mode) || self.injection.mode != 'WebIdentity' || !has(self.chainedRole)",fieldPath=".chainedRole",message="chainedRole cannot be used with injection mode WebIdentity: the pod's SDK assumes only spec.roleArn; use Files, Env or Endpoint for a chained role"
// +kubebuilder:validation:XValidation:rule="!has(self.injection) || !has(self.injection.mode) || self.injection.mode != 'WebIdentity' || (!has(self.sessionPolicy) && !has(self.policyArns))",fieldPath=".sessionPolicy",message="sessionPolicy and policyArns cannot be used with injection mode WebIdentity: the SDKs send no session policy with AssumeRoleWithWebIdentity; use Files, Env or Endpoint"
// +kubebuilder:validation:XValidation:rule="!has(self.injection) || !has(self.injection.mode) || self.injection.mode != 'WebIdentity' || !has(self.sessionDuration) || !self.sessionDuration.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self.sessionDuration) == duration('1h')",fieldPath=".sessionDuration",message="injection mode WebIdentity takes sessionDuration 1h only: the SDKs ask STS for its default session of 1 hour and refresh it themselves"
// +kubebuilder:validation:XValidation:rule="!has(self.injection) || !has(self.injection.mode) || self.injection.mode != 'WebIdentity' || !has(self.refreshBefore)",fieldPath=".refreshBefore",message="refreshBefore cannot be used with injection mode WebIdentity: the pod's SDK refreshes its credentials itself"
// +kubebuilder:validation:XValidation:rule="!has(self.injection) || !has(self.injection.mode) || self.injection.mode != 'WebIdentity' || !has(self.secretName)",fieldPath=".secretName",message="secretName cannot be used with injection mode WebIdentity: no Secret is written, the pod's SDK holds the credentials"
type IAMRoleBindingSpec struct {
	// serviceAccountName is the ServiceAccount, in this namespace, whose tokens
	// are exchanged for the role's credentials and whose pods get them.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="serviceAccountName must be a DNS subdomain: lowercase letters, digits, '-' and '.'"
	ServiceAccountName string `json:"serviceAccountName"`

	// providerRef names the ClusterSTSProvider whose STS the tokens go to.
	// The provider decides which namespaces and roles it serves. Default:
	// the controller's --default-provider.
	// +optional
	ProviderRef *ProviderReference `json:"providerRef,omitempty"`

	// roleArn is the IAM role to assume, e.g. arn:aws:iam::123456789012:role/s3-reader.
	// Any partition is accepted, and an empty account field for STS-compatible
	// servers (arn:minio:iam:::role/...). The role's trust policy must allow
	// this cluster's OIDC provider with sub system:serviceaccount:<namespace>:<serviceAccountName>.
	// Required unless the provider issues GetFederationToken or
	// GetSessionToken sessions, which take no role.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^arn:[a-z][a-z0-9-]{0,31}:iam::([0-9]{12})?:role/([!-~]*/)?[\\\\w+=,.@-]{1,64}$')",message="roleArn must be an IAM role ARN such as arn:aws:iam::123456789012:role/name (role name up to 64 characters of [A-Za-z0-9+=,.@_-])"
	RoleARN string `json:"roleArn,omitempty"`

	// chainedRole is a second role assumed with the first session's
	// credentials, typically in another account; the pods get its
	// credentials. AWS limits a chained session to 1 hour.
	// +optional
	ChainedRole *ChainedRole `json:"chainedRole,omitempty"`

	// sessionDuration is the lifetime requested for the credentials, between 15m
	// and 12h (the role's maximum session duration must allow it). Go duration
	// syntax: 1h, 90m, 1h30m.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="sessionDuration must be a duration such as 1h, 90m or 1h30m"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('15m') && duration(self) <= duration('12h'))",message="sessionDuration must be between 15m and 12h"
	SessionDuration string `json:"sessionDuration,omitempty"`

	// refreshBefore is how long before expiry the credentials are refreshed.
	// Default: a third of the credentials' actual lifetime (20m for 1h).
	// Values above half the actual lifetime are capped at half. At least 5m
	// (kubelet's delay in updating mounted Secrets), and shorter than
	// sessionDuration minus 5m.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="refreshBefore must be a non-negative duration such as 20m or 1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) >= duration('5m')",message="refreshBefore must be at least 5m: kubelet takes up to about two minutes to update a mounted Secret, and credentials refreshed later reach the pods expired"
	RefreshBefore string `json:"refreshBefore,omitempty"`

	// sessionName is the role session name, visible in CloudTrail. Default:
	// derived from the namespace and the binding name.
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[\\\\w+=,.@-]+$')",message="sessionName may contain only letters, digits and +=,.@_-"
	SessionName string `json:"sessionName,omitempty"`

	// sessionPolicy is an inline IAM policy (JSON) that further restricts the
	// session's permissions. It must be valid JSON; STS checks the rest.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	SessionPolicy string `json:"sessionPolicy,omitempty"`

	// policyArns are managed policies that further restrict the session's
	// permissions, at most 10, no duplicates.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	PolicyARNs []PolicyARN `json:"policyArns,omitempty"`

	// region is the AWS region the pods' SDKs use (the profile's region and
	// AWS_REGION). Default: the controller's --default-region. The region of
	// the STS call is the provider's.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+(-[a-z0-9]+)*$')",message="region must look like eu-west-1: lowercase letters, digits and '-'"
	Region string `json:"region,omitempty"`

	// secretName is the Secret, in this namespace, that receives the
	// credentials. Default: the binding's name. A Secret of that name that this
	// binding does not own is never overwritten. Immutable: running pods mount
	// the Secret by name, so a new name needs a new binding.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a DNS subdomain: lowercase letters, digits, '-' and '.'"
	SecretName string `json:"secretName,omitempty"`

	// injection says how the webhook hands the credentials to the
	// ServiceAccount's pods.
	// +optional
	// +kubebuilder:default={}
	Injection Injection `json:"injection,omitempty"`
}

// ChainedRole is the role a binding's first session assumes.
type ChainedRole struct {
	// roleArn is the role to assume; the provider's allowedRoleArns apply
	// to it as to spec.roleArn.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^arn:[a-z][a-z0-9-]{0,31}:iam::([0-9]{12})?:role/([!-~]*/)?[\\\\w+=,.@-]{1,64}$')",message="chainedRole.roleArn must be an IAM role ARN such as arn:aws:iam::123456789012:role/name"
	RoleARN string `json:"roleArn"`
	// externalId is the value the role's trust policy may require in
	// sts:ExternalId (the confused-deputy guard of third-party accounts).
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=1224
	// +kubebuilder:validation:XValidation:rule="self.matches('^[\\\\w+=,.@:/-]+$')",message="externalId may contain only letters, digits and +=,.@:/-"
	ExternalID string `json:"externalId,omitempty"`
	// sessionTags are added to the automatic ones (kubernetes-namespace,
	// kubernetes-service-account, stsbind-binding, stsbind-cluster), whose
	// keys they may not use: the tenant chooses these values, so base
	// authorization on the automatic tags.
	// +optional
	// +kubebuilder:validation:MaxProperties=40
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 128 && k.matches('^[\\\\w.:/=+@-]+$') && !(k in ['kubernetes-namespace', 'kubernetes-service-account', 'stsbind-binding', 'stsbind-cluster']))",message="sessionTags keys are at most 128 characters of letters, digits and .:/=+@_- and may not be an automatic tag's key"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 256)",message="sessionTags values are at most 256 characters"
	SessionTags map[string]string `json:"sessionTags,omitempty"`
	// transitiveTagKeys are the tag keys that stay on further chained
	// sessions; each must be a tag of this session.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=128
	TransitiveTagKeys []string `json:"transitiveTagKeys,omitempty"`
	// sourceIdentity is recorded by CloudTrail on this and every later
	// session and cannot be changed by them. Default: none.
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[\\\\w+=,.@-]+$')",message="sourceIdentity may contain only letters, digits and +=,.@_-"
	SourceIdentity string `json:"sourceIdentity,omitempty"`
}

// ProviderReference names a ClusterSTSProvider.
type ProviderReference struct {
	// name of the ClusterSTSProvider.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="providerRef.name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"
	Name string `json:"name"`
}

// PolicyARN is the ARN of a managed IAM policy, e.g.
// arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule="self.matches('^arn:[a-z][a-z0-9-]{0,31}:iam::([0-9]{12}|aws)?:policy/([!-~]*/)?[\\\\w+=,.@-]{1,128}$')",message="each policyArns entry must be a policy ARN such as arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
type PolicyARN string

// Injection says how the webhook hands a binding's credentials to pods.
// +kubebuilder:validation:XValidation:rule="!has(self.restartOnRotation) || self.restartOnRotation == 'Never' || (has(self.mode) && self.mode in ['Env', 'None'])",fieldPath=".restartOnRotation",message="restartOnRotation: Rollout needs mode Env (or None, with the variables wired by hand): Files and Endpoint pods read refreshed credentials without a restart"
type Injection struct {
	// mode is how the credentials reach the containers: Files (default; a
	// mounted profile whose credential_process re-reads refreshed credentials),
	// Env (variables fixed at container start), Endpoint (a sidecar serving the
	// container-credentials API), WebIdentity (a projected ServiceAccount
	// token with the provider's audience and AWS_ROLE_ARN,
	// AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_SESSION_NAME, the region and
	// AWS_ENDPOINT_URL_STS, as the IRSA webhook injects: the pod's SDK calls
	// STS itself and no Secret is written; the provider's identity must be
	// webIdentity) or None (the Secret only).
	// +optional
	// +kubebuilder:default=Files
	Mode InjectionMode `json:"mode,omitempty"`

	// containers limits injection to these container names (init containers
	// included). Default: every container.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Containers []string `json:"containers,omitempty"`

	// restartOnRotation: Rollout restarts the Deployments, StatefulSets and
	// DaemonSets of this namespace whose pods run as serviceAccountName and
	// read this binding's Secret into environment variables, each time the
	// controller replaces the credentials those pods hold (a refresh, a spec
	// change, a repaired Secret), right after the new Secret is written. The
	// restart sets the pod template annotation restart.stsbind.dev/<binding>
	// to the new credentials' identity; a controller restart over unchanged
	// credentials restarts nothing. A workload is restarted at most once per
	// the controller's --restart-min-interval, but never later than halfway
	// to the expiry of the credentials its pods hold. Default: Never.
	// +optional
	RestartOnRotation RestartOnRotation `json:"restartOnRotation,omitempty"`
}

// IAMRoleBindingStatus is what the controller observed.
type IAMRoleBindingStatus struct {
	// conditions: Ready is True while the Secret holds valid credentials for the
	// current spec; its reason names the fault otherwise.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// servedGeneration is the generation of the spec the credentials in the
	// Secret were issued for. Behind observedGeneration when the latest spec
	// fails (condition Ready, reason PreviousGenerationServed): the Secret
	// then keeps serving, and refreshing, the credentials of servedSpec until
	// the latest spec works or the provider no longer permits servedSpec.
	// +optional
	ServedGeneration int64 `json:"servedGeneration,omitempty"`

	// servedSpec is the spec of servedGeneration: the last one that worked.
	// +optional
	ServedSpec *IAMRoleBindingSpec `json:"servedSpec,omitempty"`

	// secretName is the Secret that holds the credentials.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// provider is the ClusterSTSProvider the binding uses (spec.providerRef,
	// or the controller's default).
	// +optional
	Provider string `json:"provider,omitempty"`

	// expiration is when the credentials in the Secret expire.
	// +optional
	Expiration *metav1.Time `json:"expiration,omitempty"`

	// lastRefreshTime is when the controller last obtained credentials.
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`

	// nextRefreshTime is when the controller will next obtain credentials.
	// +optional
	NextRefreshTime *metav1.Time `json:"nextRefreshTime,omitempty"`

	// assumedRoleArn is the assumed-role ARN STS returned (may be empty on
	// STS-compatible servers).
	// +optional
	AssumedRoleARN string `json:"assumedRoleArn,omitempty"`

	// account and callerArn are what STS GetCallerIdentity says the issued
	// credentials belong to (condition IdentityVerified tells whether the
	// STS server could answer).
	// +optional
	Account string `json:"account,omitempty"`
	// +optional
	CallerARN string `json:"callerArn,omitempty"`

	// subject is the token subject STS saw, system:serviceaccount:<ns>:<name>
	// (may be empty on STS-compatible servers).
	// +optional
	Subject string `json:"subject,omitempty"`

	// restart is the state of spec.injection.restartOnRotation.
	// +optional
	Restart *RestartStatus `json:"restart,omitempty"`

	// podsWithoutCredentials is how many pods of the ServiceAccount are
	// running (or about to) without this binding's Secret: admitted while
	// the webhook was unreachable, or started before the binding existed.
	// Restart them so that the webhook injects them; condition PodsInjected
	// names them. Pods annotated stsbind.dev/inject: "false" do not count;
	// unset for modes None and WebIdentity.
	// +optional
	// +kubebuilder:validation:Minimum=0
	PodsWithoutCredentials *int32 `json:"podsWithoutCredentials,omitempty"`
}

// RestartStatus records the restarts on rotation of a binding's workloads.
type RestartStatus struct {
	// credentials identifies the credentials the last restart round was for:
	// the first 16 hex digits of the Secret's stsbind.dev/data-hash (a hash,
	// not key material). A Secret whose hash differs holds rotated
	// credentials and starts a new round.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Credentials string `json:"credentials,omitempty"`

	// expiration is when those credentials expire: the pods restarted for
	// them hold them until the next round, which never puts a restart off
	// past halfway to this time.
	// +optional
	Expiration *metav1.Time `json:"expiration,omitempty"`

	// workloads are the Deployments, StatefulSets and DaemonSets whose pods
	// held the binding's credentials in environment variables at the last
	// round.
	// +optional
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=100
	Workloads []WorkloadRestart `json:"workloads,omitempty"`
}

// WorkloadRestart is one workload's restarts on rotation.
type WorkloadRestart struct {
	// kind is Deployment, StatefulSet or DaemonSet (group apps).
	// +required
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`

	// name of the workload, in the binding's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// credentials is the identity its pod template's
	// restart.stsbind.dev/<binding> annotation carries; empty when it was
	// never restarted.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Credentials string `json:"credentials,omitempty"`

	// lastRestartTime is when stsbind last restarted it.
	// +optional
	LastRestartTime *metav1.Time `json:"lastRestartTime,omitempty"`

	// nextRestartTime is set while a restart waits: for the minimum interval
	// since the last one, or for a retry after a failed one.
	// +optional
	NextRestartTime *metav1.Time `json:"nextRestartTime,omitempty"`
}

// IAMRoleBinding binds a ServiceAccount to an IAM role: the controller keeps
// temporary credentials for the role in a Secret, and the webhook hands them to
// the ServiceAccount's pods.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=irb,categories=stsbind
// +kubebuilder:selectablefield:JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="ServiceAccount",type=string,JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.roleArn`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiration`
// +kubebuilder:printcolumn:name="Missed-Pods",type=integer,JSONPath=`.status.podsWithoutCredentials`
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.status.provider`,priority=1
// +kubebuilder:printcolumn:name="Account",type=string,JSONPath=`.status.account`,priority=1
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.injection.mode`,priority=1
// +kubebuilder:printcolumn:name="Generation",type=integer,JSONPath=`.metadata.generation`,priority=1
// +kubebuilder:printcolumn:name="Served",type=integer,JSONPath=`.status.servedGeneration`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="has(self.spec.secretName) == has(oldSelf.spec.secretName) && (!has(self.spec.secretName) || self.spec.secretName == oldSelf.spec.secretName)",fieldPath=".spec.secretName",message="spec.secretName is immutable: running pods mount the Secret by name; create a binding with the new secretName, move the pods to it, then delete this one"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name of an IAMRoleBinding must be at most 63 characters: it becomes a label value and a volume name"
type IAMRoleBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IAMRoleBindingSpec `json:"spec"`
	// +optional
	Status IAMRoleBindingStatus `json:"status,omitempty"`
}

// IAMRoleBindingList is a list of IAMRoleBindings.
// +kubebuilder:object:root=true
type IAMRoleBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IAMRoleBinding `json:"items"`
}

func init() {
	SchemeBuilder.Register(&IAMRoleBinding{}, &IAMRoleBindingList{})
}
