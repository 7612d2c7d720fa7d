package controllers_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
)

func webIdentityMode(b *stsbindv1.IAMRoleBinding) {
	b.Spec.Injection.Mode = stsbindv1.InjectionWebIdentity
}

// TestWebIdentityBindingWritesNoSecret: a permitted WebIdentity binding
// becomes Ready without any STS call and without a Secret. The controller's
// only token is the one it shows a TokenReview to check the provider's
// audience; STS never sees a token of that audience. The status says what
// was not verified.
func TestWebIdentityBindingWritesNoSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	audience := "webid-" + rand.String(8) // no verdict kept for it yet
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.Audience = audience })
	f.binding("web", func(b *stsbindv1.IAMRoleBinding) { useProvider(p)(b); webIdentityMode(b) })
	b := f.waitReady("web", metav1.ConditionTrue, stsbindv1.ReasonWebIdentityPermitted)
	ready := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
	t.Log(ready.Message)
	for _, want := range []string{f.role, audience, "86400 s", "Not verified: the role's trust policy"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q does not say %q", ready.Message, want)
		}
	}
	id := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionIdentityVerified)
	if id == nil || id.Status != metav1.ConditionUnknown || id.Reason != stsbindv1.ReasonExchangedInPod {
		t.Errorf("IdentityVerified = %+v, want Unknown/%s", id, stsbindv1.ReasonExchangedInPod)
	}
	if b.Status.SecretName != "" || b.Status.Expiration != nil || b.Status.NextRefreshTime != nil {
		t.Errorf("status names a Secret or credentials: secretName %q, expiration %v, nextRefresh %v",
			b.Status.SecretName, b.Status.Expiration, b.Status.NextRefreshTime)
	}
	if err := f.get(&corev1.Secret{}, "web"); !apierrors.IsNotFound(err) {
		t.Errorf("Secret web: %v, want NotFound", err)
	}
	if n := fake.CallCount(f.role); n != 0 {
		t.Errorf("%d STS calls for the role, want 0", n)
	}
	for _, c := range fake.Calls("") {
		if ststest.Audience(c.Token) == audience {
			t.Fatal("the fake STS received a token of the WebIdentity provider's audience")
		}
	}
	if n := tokensMinted.get(f.ns + "/" + f.sa); n != 1 {
		t.Errorf("%d tokens minted for %s/%s, want 1 (the audience check)", n, f.ns, f.sa)
	}
	f.waitEvent("web", corev1.EventTypeNormal, stsbindv1.ReasonWebIdentityPermitted)

	// A second binding of the provider uses the kept verdict: no token at all.
	g := newFixture(t)
	g.serviceAccount()
	g.binding("web", func(b *stsbindv1.IAMRoleBinding) { useProvider(p)(b); webIdentityMode(b) })
	g.waitReady("web", metav1.ConditionTrue, stsbindv1.ReasonWebIdentityPermitted)
	g.refusedUntouched(g.role)
}

// TestWebIdentityRefusals: the provider's rules apply to WebIdentity
// bindings exactly as to the others, and an accessKeys provider cannot serve
// them; each refusal is a Ready=False condition with a Warning event of the
// same reason, and no token is minted.
func TestWebIdentityRefusals(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		provider func(*stsbindv1.ClusterSTSProviderSpec)
		role     func(f *fixture) string
		want     string
	}{
		"role outside the patterns": {
			provider: func(s *stsbindv1.ClusterSTSProviderSpec) {
				s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/${namespace}/*"}
			},
			role: func(*fixture) string { return "arn:aws:iam::123456789012:role/other-namespace/admin" },
			want: stsbindv1.ReasonRoleNotAllowed,
		},
		"namespace outside the selector": {
			provider: func(s *stsbindv1.ClusterSTSProviderSpec) {
				s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tenant.example/aws": "yes"}}
			},
			want: stsbindv1.ReasonNamespaceNotAllowed,
		},
		"an accessKeys provider": {
			provider: func(s *stsbindv1.ClusterSTSProviderSpec) {
				s.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "iam-user"}}
			},
			want: stsbindv1.ReasonModeNotSupported,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.serviceAccount()
			p := f.provider(tc.provider)
			role := f.role
			if tc.role != nil {
				role = tc.role(f)
			}
			f.binding("web", func(b *stsbindv1.IAMRoleBinding) { useProvider(p)(b); webIdentityMode(b); b.Spec.RoleARN = role })
			b := f.waitReady("web", metav1.ConditionFalse, tc.want)
			t.Log(meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady).Message)
			f.waitEvent("web", corev1.EventTypeWarning, tc.want)
			f.refusedUntouched(role)
		})
	}
}

// TestWebIdentityWaitsForServiceAccount: without the ServiceAccount the
// binding says so, and becomes Ready as soon as it is created.
func TestWebIdentityWaitsForServiceAccount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.binding("web", webIdentityMode)
	f.waitReady("web", metav1.ConditionFalse, stsbindv1.ReasonServiceAccountNotFound)
	f.waitEvent("web", corev1.EventTypeWarning, stsbindv1.ReasonServiceAccountNotFound)
	f.serviceAccount()
	f.waitReady("web", metav1.ConditionTrue, stsbindv1.ReasonWebIdentityPermitted)
}

// TestSwitchToWebIdentityKeepsTheSecret: a Files binding switched to
// WebIdentity stops issuing, and its Secret, still valid, is neither
// rewritten nor deleted (pods started before the switch keep working).
func TestSwitchToWebIdentityKeepsTheSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	b := f.binding("switch", nil)
	f.waitReady("switch", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	before := f.secret("switch")
	calls := fake.CallCount(f.role)
	if err := f.get(b, "switch"); err != nil {
		t.Fatal(err)
	}
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Mode = stsbindv1.InjectionWebIdentity })
	got := f.waitReady("switch", metav1.ConditionTrue, stsbindv1.ReasonWebIdentityPermitted)
	if got.Status.SecretName != "" || got.Status.Expiration != nil {
		t.Errorf("status still describes the Secret: %q, %v", got.Status.SecretName, got.Status.Expiration)
	}
	if after := f.secret("switch"); after.ResourceVersion != before.ResourceVersion {
		t.Error("the Secret was written after the switch to WebIdentity")
	}
	if n := fake.CallCount(f.role); n != calls {
		t.Errorf("%d STS calls after the switch, want 0", n-calls)
	}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(before), &corev1.Secret{}); err != nil {
		t.Errorf("the Secret is gone: %v", err)
	}
}

// TestRefusedSwitchToWebIdentityServesThePreviousSecret: a Files binding
// switched to WebIdentity with a role the provider does not allow keeps
// serving, and refreshing, the Files generation's Secret, as any refused
// spec change does; UpToDate carries the refusal.
func TestRefusedSwitchToWebIdentityServesThePreviousSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) {
		s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/${namespace}/*"}
	})
	f.role = "arn:aws:iam::123456789012:role/" + f.ns + "/reader"
	b := f.binding("switch", useProvider(p))
	f.waitReady("switch", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if err := f.get(b, "switch"); err != nil {
		t.Fatal(err)
	}
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) {
		s.Injection.Mode = stsbindv1.InjectionWebIdentity
		s.RoleARN = "arn:aws:iam::123456789012:role/other-namespace/admin"
	})
	got := f.waitReady("switch", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	up := meta.FindStatusCondition(got.Status.Conditions, stsbindv1.ConditionUpToDate)
	if up == nil || up.Status != metav1.ConditionFalse || up.Reason != stsbindv1.ReasonRoleNotAllowed {
		t.Errorf("UpToDate = %+v, want False/%s", up, stsbindv1.ReasonRoleNotAllowed)
	}
	if got.Status.SecretName != "switch" || got.Status.Expiration == nil {
		t.Errorf("status does not describe the served Secret: %q, %v", got.Status.SecretName, got.Status.Expiration)
	}
}
