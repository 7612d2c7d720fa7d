package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// SecretNameOrDefault is the Secret the binding's credentials go to.
func (b *IAMRoleBinding) SecretNameOrDefault() string {
	if b.Spec.SecretName != "" {
		return b.Spec.SecretName
	}
	return b.Name
}

// InjectionModeOrDefault is the binding's injection mode; Files when unset
// (objects created before defaulting, or built in code).
func (b *IAMRoleBinding) InjectionModeOrDefault() InjectionMode {
	if b.Spec.Injection.Mode == "" {
		return InjectionFiles
	}
	return b.Spec.Injection.Mode
}

// ProviderNameOrDefault is the ClusterSTSProvider the binding uses: its
// providerRef, else the controller's default.
func (b *IAMRoleBinding) ProviderNameOrDefault(defaultProvider string) string {
	if b.Spec.ProviderRef != nil && b.Spec.ProviderRef.Name != "" {
		return b.Spec.ProviderRef.Name
	}
	return defaultProvider
}

// AudienceOrDefault is the audience of the provider's tokens.
func (s *ClusterSTSProviderSpec) AudienceOrDefault() string {
	if s.Audience != "" {
		return s.Audience
	}
	return DefaultAudience
}

// SessionBounds parses min- and maxSessionDuration (defaults 15m and 12h).
func (s *ClusterSTSProviderSpec) SessionBounds() (lo, hi time.Duration, err error) {
	lo, hi = 15*time.Minute, 12*time.Hour
	if s.MinSessionDuration != "" {
		if lo, err = time.ParseDuration(s.MinSessionDuration); err != nil {
			return 0, 0, fmt.Errorf("spec.minSessionDuration: %w", err)
		}
	}
	if s.MaxSessionDuration != "" {
		if hi, err = time.ParseDuration(s.MaxSessionDuration); err != nil {
			return 0, 0, fmt.Errorf("spec.maxSessionDuration: %w", err)
		}
	}
	return lo, hi, nil
}

// TimeoutOrDefault is the timeout of one STS call (default 30s).
func (s *ClusterSTSProviderSpec) TimeoutOrDefault() time.Duration {
	if d, err := time.ParseDuration(s.Timeout); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}

// Limits are the provider's rate limits with defaults applied: qps 100,
// burst 200, namespaceQPS half of qps (at least 1).
func (r RateLimit) Limits() (qps, burst, namespaceQPS int32) {
	qps, burst, namespaceQPS = r.QPS, r.Burst, r.NamespaceQPS
	if qps <= 0 {
		qps = 100
	}
	if burst <= 0 {
		burst = 200
	}
	if namespaceQPS <= 0 {
		namespaceQPS = max(qps/2, 1)
	}
	return qps, burst, min(namespaceQPS, qps)
}

// Durations parses sessionDuration (default 1h) and refreshBefore (nil when
// unset). The API server has checked both; an error means a spec that slipped
// past validation, which stays broken until it is changed.
func (s *IAMRoleBindingSpec) Durations() (session time.Duration, refreshBefore *time.Duration, err error) {
	session = time.Hour
	if s.SessionDuration != "" {
		if session, err = time.ParseDuration(s.SessionDuration); err != nil {
			return 0, nil, fmt.Errorf("spec.sessionDuration: %w", err)
		}
	}
	if s.RefreshBefore != "" {
		d, err := time.ParseDuration(s.RefreshBefore)
		if err != nil {
			return 0, nil, fmt.Errorf("spec.refreshBefore: %w", err)
		}
		refreshBefore = &d
	}
	return session, refreshBefore, nil
}

// DefaultTokenExpirationSeconds is the lifetime of the tokens projected into
// WebIdentity-mode pods unless the provider sets one.
const DefaultTokenExpirationSeconds int64 = 86400

// MinTokenExpirationSeconds is kubelet's minimum for a projected
// ServiceAccount token.
const MinTokenExpirationSeconds int64 = 600

// TokenExpirationSecondsOrDefault is the lifetime of the tokens projected
// into the pods of the provider's WebIdentity-mode bindings: the provider's
// webIdentity.tokenExpirationSeconds, default 86400, never under 600.
func (s *ClusterSTSProviderSpec) TokenExpirationSecondsOrDefault() int64 {
	if s.Identity == nil || s.Identity.WebIdentity == nil || s.Identity.WebIdentity.TokenExpirationSeconds == 0 {
		return DefaultTokenExpirationSeconds
	}
	return max(s.Identity.WebIdentity.TokenExpirationSeconds, MinTokenExpirationSeconds)
}

// UsesWebIdentity reports whether the provider's identity is a
// ServiceAccount token (the default), not an IAM user's keys.
func (s *ClusterSTSProviderSpec) UsesWebIdentity() bool {
	return s.Identity == nil || s.Identity.AccessKeys == nil
}

// SessionNameOrDefault is spec.sessionName, else "<namespace>.<name>"
// shortened to STS's 64 characters.
func (b *IAMRoleBinding) SessionNameOrDefault() string {
	if b.Spec.SessionName != "" {
		return b.Spec.SessionName
	}
	return DefaultSessionName(b.Namespace, b.Name)
}

// DefaultSessionName is "<namespace>.<name>", which is always 2–64 characters
// of STS's [\w+=,.@-] once shortened: DNS names use only [a-z0-9.-]. Past 64
// characters it keeps a prefix and a hash of the whole, so distinct bindings
// keep distinct names in CloudTrail.
func DefaultSessionName(namespace, name string) string {
	return ShortName(namespace+"."+name, 64)
}

// ShortName keeps full when it fits in limit, else a prefix and a hash of
// the whole, so distinct names stay distinct.
func ShortName(full string, limit int) string {
	if len(full) <= limit {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	return strings.TrimRight(full[:limit-len(suffix)], ".-") + suffix
}
