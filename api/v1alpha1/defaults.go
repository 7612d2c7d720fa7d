package v1alpha1

import (
	"fmt"
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

// AudienceOrDefault is the token audience.
func (s *IAMRoleBindingSpec) AudienceOrDefault() string {
	if s.Audience != "" {
		return s.Audience
	}
	return DefaultAudience
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
