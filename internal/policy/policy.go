// Package policy decides whether a ClusterSTSProvider serves a binding: the
// admin's namespace selector, role patterns, session bounds and what the
// provider's identity can do. The controller applies it before any token is
// minted, the webhook before it projects a token into a WebIdentity pod.
package policy

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// Input is what decides whether a provider serves a binding.
type Input struct {
	Provider        *stsbindv1.ClusterSTSProvider
	Namespace       string
	NamespaceLabels map[string]string
	ServiceAccount  string
	RoleARN         string
	ChainedRoleARN  string // "" without a chained role
	HasPolicy       bool   // sessionPolicy or policyArns
	Session         time.Duration
	// WebIdentity: the binding's pods exchange their own tokens (injection
	// mode WebIdentity), which only a webIdentity provider can serve.
	WebIdentity bool
}

// Refusal says why a provider does not serve a binding: a condition reason
// and a message that names the rule.
type Refusal struct{ Reason, Message string }

// Permit applies the provider's rules to a binding: nil when the binding may
// use the provider, else the first rule it breaks. No token is minted and no
// STS call is made for a refused binding.
func Permit(in Input) *Refusal {
	p := in.Provider
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
	if err != nil || p.Spec.NamespaceSelector == nil {
		return &Refusal{stsbindv1.ReasonProviderNotReady,
			fmt.Sprintf("ClusterSTSProvider %s has no usable namespaceSelector", p.Name)}
	}
	if !sel.Matches(labels.Set(in.NamespaceLabels)) {
		return &Refusal{stsbindv1.ReasonNamespaceNotAllowed,
			fmt.Sprintf("ClusterSTSProvider %s does not serve namespace %s: its namespaceSelector %q does not match the namespace's labels",
				p.Name, in.Namespace, sel.String())}
	}
	if in.WebIdentity && !p.Spec.UsesWebIdentity() {
		return &Refusal{stsbindv1.ReasonModeNotSupported,
			fmt.Sprintf("ClusterSTSProvider %s signs with an IAM user's access keys, but injection mode WebIdentity needs a provider whose identity is webIdentity: "+
				"the pods exchange their own ServiceAccount tokens; use mode Files, Env or Endpoint, or a webIdentity provider", p.Name)}
	}
	if r := operationRefusal(p, in); r != nil {
		return r
	}
	for _, role := range []string{in.RoleARN, in.ChainedRoleARN} {
		if role != "" && !roleAllowed(p.Spec.AllowedRoleARNs, role, in.Namespace, in.ServiceAccount) {
			return &Refusal{stsbindv1.ReasonRoleNotAllowed,
				fmt.Sprintf("ClusterSTSProvider %s does not allow role %s for ServiceAccount %s/%s; allowedRoleArns: %s",
					p.Name, role, in.Namespace, in.ServiceAccount, joinPatterns(p.Spec.AllowedRoleARNs))}
		}
	}
	lo, hi, err := p.Spec.SessionBounds()
	if err != nil {
		return &Refusal{stsbindv1.ReasonProviderNotReady, fmt.Sprintf("ClusterSTSProvider %s: %v", p.Name, err)}
	}
	if in.Session < lo || in.Session > hi {
		return &Refusal{stsbindv1.ReasonSessionDurationNotAllowed,
			fmt.Sprintf("sessionDuration %s is outside ClusterSTSProvider %s's bounds %s..%s", in.Session, p.Name, lo, hi)}
	}
	return nil
}

// operationRefusal checks what the provider's operation needs of a binding:
// a role for the AssumeRole kinds, none for the two that take none, a policy
// for a federated user (without one it may do nothing), and no chained role
// after GetFederationToken (federated sessions cannot call AssumeRole).
func operationRefusal(p *stsbindv1.ClusterSTSProvider, in Input) *Refusal {
	op := stsbindv1.KeysOperation("AssumeRoleWithWebIdentity")
	if p.Spec.Identity != nil && p.Spec.Identity.AccessKeys != nil {
		op = cmp.Or(p.Spec.Identity.AccessKeys.Operation, stsbindv1.OperationAssumeRole)
	}
	switch {
	case in.RoleARN == "" && (op == "AssumeRoleWithWebIdentity" || op == stsbindv1.OperationAssumeRole):
		return &Refusal{stsbindv1.ReasonRoleRequired,
			fmt.Sprintf("ClusterSTSProvider %s issues credentials with %s: spec.roleArn is required", p.Name, op)}
	case in.RoleARN != "" && (op == stsbindv1.OperationGetFederationToken || op == stsbindv1.OperationGetSessionToken):
		return &Refusal{stsbindv1.ReasonInvalidSpec,
			fmt.Sprintf("ClusterSTSProvider %s issues %s sessions of its IAM user, which take no role: remove spec.roleArn (a chainedRole may assume one)", p.Name, op)}
	case op == stsbindv1.OperationGetFederationToken && !in.HasPolicy:
		return &Refusal{stsbindv1.ReasonInvalidSpec,
			fmt.Sprintf("ClusterSTSProvider %s issues GetFederationToken sessions: set spec.sessionPolicy or spec.policyArns, all that the federated user may do", p.Name)}
	case op == stsbindv1.OperationGetFederationToken && in.ChainedRoleARN != "":
		return &Refusal{stsbindv1.ReasonInvalidSpec,
			fmt.Sprintf("ClusterSTSProvider %s issues GetFederationToken sessions, which cannot assume a chained role", p.Name)}
	}
	return nil
}

// roleAllowed reports whether arn matches one of the patterns after
// ${namespace} and ${serviceAccount} are substituted.
func roleAllowed(patterns []stsbindv1.RoleARNPattern, arn, namespace, serviceAccount string) bool {
	r := strings.NewReplacer("${namespace}", namespace, "${serviceAccount}", serviceAccount)
	for _, p := range patterns {
		if globMatch(r.Replace(string(p)), arn) {
			return true
		}
	}
	return false
}

// globMatch matches s against a pattern in which "*" stands for any run of
// characters other than "/", "**" for any run at all, and every other
// character for itself.
func globMatch(pattern, s string) bool {
	// Iterative matching that remembers the last "*" and the last "**" to
	// return to: linear enough for ARNs of at most 2048 characters, never
	// exponential. A "*" cannot absorb a "/", so when it gets stuck the last
	// "**" before it takes one more character instead.
	p, i := 0, 0
	single, singleAt := -1, 0 // pattern index after the last "*", and where in s it started
	deep, deepAt := -1, 0     // the same for the last "**"
	for i < len(s) {
		switch {
		case strings.HasPrefix(pattern[p:], "**"):
			p += 2
			deep, deepAt, single = p, i, -1
		case p < len(pattern) && pattern[p] == '*':
			p++
			single, singleAt = p, i
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case single >= 0 && s[singleAt] != '/':
			singleAt++
			p, i = single, singleAt
		case deep >= 0:
			deepAt++
			p, i, single = deep, deepAt, -1
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func joinPatterns(ps []stsbindv1.RoleARNPattern) string {
	return strings.Join(PatternStrings(ps), ", ")
}

// PatternStrings is the provider's allowedRoleArns as strings.
func PatternStrings(ps []stsbindv1.RoleARNPattern) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}
