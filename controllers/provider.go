package controllers

import "github.com/stsbind/stsbind/internal/policy"

// The provider's rules live in internal/policy, shared with the webhook,
// which applies them before it projects a token into a WebIdentity pod.
type (
	permitInput = policy.Input
	refusal     = policy.Refusal
)

func permit(in permitInput) *refusal { return policy.Permit(in) }
