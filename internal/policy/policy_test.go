package policy

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		pattern, s string
		want       bool
	}{
		"exact":                      {"arn:aws:iam::1:role/a", "arn:aws:iam::1:role/a", true},
		"exact differs":              {"arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b", false},
		"star suffix":                {"arn:aws:iam::1:role/team-*", "arn:aws:iam::1:role/team-reader", true},
		"star matches empty":         {"arn:aws:iam::1:role/team-*", "arn:aws:iam::1:role/team-", true},
		"star never crosses a slash": {"arn:aws:iam::1:role/team/*", "arn:aws:iam::1:role/team/x/admin", false},
		"star within one segment":    {"arn:aws:iam::1:role/team/*", "arn:aws:iam::1:role/team/admin", true},
		"star in the middle":         {"arn:aws:iam::*:role/x", "arn:aws:iam::123456789012:role/x", true},
		"two stars":                  {"arn:*:iam::*:role/r-*", "arn:aws-cn:iam::123456789012:role/r-1", true},
		"prefix only is not enough":  {"arn:aws:iam::1:role/a", "arn:aws:iam::1:role/ab", false},
		"pattern longer":             {"arn:aws:iam::1:role/ab", "arn:aws:iam::1:role/a", false},
		"double star crosses":        {"arn:aws:iam::1:role/**", "arn:aws:iam::1:role/team/x/admin", true},
		"double star in the middle":  {"arn:aws:iam::1:role/k8s/**/reader", "arn:aws:iam::1:role/k8s/a/b/reader", true},
		"double star still anchored": {"arn:aws:iam::1:role/k8s/**", "arn:aws:iam::2:role/k8s/a", false},
		"single after double":        {"**/x-*", "a/b/x-y", true},
		"single after double no /":   {"**/x-*", "a/b/x-y/z", false},
		"double takes over":          {"**/x-*", "a/x-b/x-c", true},
		"single before double":       {"r-*/**", "r-1/a/b", true},
		"single cannot cross first":  {"r-*/x", "r-1/2/x", false},
		"backtracking":               {"*a*b", "xxaxxab", true},
		"backtracking fails":         {"*a*b", "xxaxxa", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := globMatch(tc.pattern, tc.s); got != tc.want {
				t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
			}
		})
	}
}

func TestPermit(t *testing.T) {
	t.Parallel()
	provider := func(mutate func(*stsbindv1.ClusterSTSProviderSpec)) *stsbindv1.ClusterSTSProvider {
		p := &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "aws"}, Spec: stsbindv1.ClusterSTSProviderSpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"stsbind.dev/tenant": "true"}},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/k8s/${namespace}/*", "arn:aws:iam::123456789012:role/${namespace}-${serviceAccount}"},
		}}
		if mutate != nil {
			mutate(&p.Spec)
		}
		return p
	}
	tenant := map[string]string{"stsbind.dev/tenant": "true", "kubernetes.io/metadata.name": "team-a"}
	keys := func(op stsbindv1.KeysOperation) func(*stsbindv1.ClusterSTSProviderSpec) {
		return func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "user", Operation: op}}
		}
	}
	ownRole := "arn:aws:iam::123456789012:role/k8s/team-a/reader"
	tests := map[string]struct {
		provider   *stsbindv1.ClusterSTSProvider
		labels     map[string]string
		role       string
		chained    string
		policy     bool
		session    time.Duration
		webID      bool   // injection mode WebIdentity
		wantReason string // empty: permitted
	}{
		"web identity needs a role":                     {provider: provider(nil), labels: tenant, wantReason: stsbindv1.ReasonRoleRequired},
		"AssumeRole with keys needs a role":             {provider: provider(keys(stsbindv1.OperationAssumeRole)), labels: tenant, wantReason: stsbindv1.ReasonRoleRequired},
		"AssumeRole with keys":                          {provider: provider(keys(stsbindv1.OperationAssumeRole)), labels: tenant, role: ownRole},
		"GetSessionToken takes no role":                 {provider: provider(keys(stsbindv1.OperationGetSessionToken)), labels: tenant, role: ownRole, wantReason: stsbindv1.ReasonInvalidSpec},
		"GetSessionToken":                               {provider: provider(keys(stsbindv1.OperationGetSessionToken)), labels: tenant},
		"GetSessionToken then a chained role":           {provider: provider(keys(stsbindv1.OperationGetSessionToken)), labels: tenant, chained: ownRole},
		"GetFederationToken needs a policy":             {provider: provider(keys(stsbindv1.OperationGetFederationToken)), labels: tenant, wantReason: stsbindv1.ReasonInvalidSpec},
		"GetFederationToken with a policy":              {provider: provider(keys(stsbindv1.OperationGetFederationToken)), labels: tenant, policy: true},
		"GetFederationToken cannot chain":               {provider: provider(keys(stsbindv1.OperationGetFederationToken)), labels: tenant, policy: true, chained: ownRole, wantReason: stsbindv1.ReasonInvalidSpec},
		"chained role outside the patterns":             {provider: provider(nil), labels: tenant, role: ownRole, chained: "arn:aws:iam::210987654321:role/anything", wantReason: stsbindv1.ReasonRoleNotAllowed},
		"chained role inside the patterns":              {provider: provider(nil), labels: tenant, role: ownRole, chained: "arn:aws:iam::123456789012:role/team-a-app"},
		"role under the namespace path":                 {provider: provider(nil), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-a/reader"},
		"role named for namespace and ServiceAccount":   {provider: provider(nil), labels: tenant, role: "arn:aws:iam::123456789012:role/team-a-app"},
		"another namespace's path":                      {provider: provider(nil), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-b/reader", wantReason: stsbindv1.ReasonRoleNotAllowed},
		"another ServiceAccount's role":                 {provider: provider(nil), labels: tenant, role: "arn:aws:iam::123456789012:role/team-a-admin", wantReason: stsbindv1.ReasonRoleNotAllowed},
		"deeper path than the pattern":                  {provider: provider(nil), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-a/x/reader", wantReason: stsbindv1.ReasonRoleNotAllowed},
		"other account":                                 {provider: provider(nil), labels: tenant, role: "arn:aws:iam::999999999999:role/k8s/team-a/reader", wantReason: stsbindv1.ReasonRoleNotAllowed},
		"namespace not selected":                        {provider: provider(nil), labels: map[string]string{"kubernetes.io/metadata.name": "team-a"}, role: "arn:aws:iam::123456789012:role/k8s/team-a/reader", wantReason: stsbindv1.ReasonNamespaceNotAllowed},
		"empty selector selects all":                    {provider: provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.NamespaceSelector = &metav1.LabelSelector{} }), labels: nil, role: "arn:aws:iam::123456789012:role/k8s/team-a/reader"},
		"missing selector selects none":                 {provider: provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.NamespaceSelector = nil }), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-a/reader", wantReason: stsbindv1.ReasonProviderNotReady},
		"session above the maximum":                     {provider: provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.MaxSessionDuration = "1h" }), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-a/reader", session: 2 * time.Hour, wantReason: stsbindv1.ReasonSessionDurationNotAllowed},
		"WebIdentity mode with a web identity provider": {provider: provider(nil), labels: tenant, role: ownRole, webID: true},
		"WebIdentity mode with access keys":             {provider: provider(keys(stsbindv1.OperationAssumeRole)), labels: tenant, role: ownRole, webID: true, wantReason: stsbindv1.ReasonModeNotSupported},
		"WebIdentity mode, role outside the patterns":   {provider: provider(nil), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-b/reader", webID: true, wantReason: stsbindv1.ReasonRoleNotAllowed},
		"WebIdentity mode, namespace not selected":      {provider: provider(nil), labels: map[string]string{"kubernetes.io/metadata.name": "team-a"}, role: ownRole, webID: true, wantReason: stsbindv1.ReasonNamespaceNotAllowed},
		"session below the minimum":                     {provider: provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.MinSessionDuration = "30m" }), labels: tenant, role: "arn:aws:iam::123456789012:role/k8s/team-a/reader", session: 20 * time.Minute, wantReason: stsbindv1.ReasonSessionDurationNotAllowed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			session := tc.session
			if session == 0 {
				session = time.Hour
			}
			got := Permit(Input{Provider: tc.provider, Namespace: "team-a", NamespaceLabels: tc.labels, ServiceAccount: "app",
				RoleARN: tc.role, ChainedRoleARN: tc.chained, HasPolicy: tc.policy, Session: session, WebIdentity: tc.webID})
			switch {
			case tc.wantReason == "" && got != nil:
				t.Errorf("refused (%s): %s", got.Reason, got.Message)
			case tc.wantReason != "" && got == nil:
				t.Errorf("permitted, want %s", tc.wantReason)
			case tc.wantReason != "" && got.Reason != tc.wantReason:
				t.Errorf("reason %s (%s), want %s", got.Reason, got.Message, tc.wantReason)
			}
		})
	}
}

// TestGlobMatchAgreesWithRegexp compares globMatch with a regular expression
// built from the same pattern, over many small random patterns and inputs.
func TestGlobMatchAgreesWithRegexp(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "/", "*", "**"}
	for range 20000 {
		var pattern, s strings.Builder
		for range rng.IntN(6) {
			pattern.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		for range rng.IntN(8) {
			s.WriteString(alphabet[rng.IntN(3)])
		}
		re := "^" + strings.NewReplacer("**", ".*", "*", "[^/]*").Replace(pattern.String()) + "$"
		want := regexp.MustCompile(re).MatchString(s.String())
		if got := globMatch(pattern.String(), s.String()); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp %s says %v", pattern.String(), s.String(), got, re, want)
		}
	}
}
