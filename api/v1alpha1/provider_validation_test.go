package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func validProviderSpec() stsbindv1.ClusterSTSProviderSpec {
	return stsbindv1.ClusterSTSProviderSpec{
		NamespaceSelector: &metav1.LabelSelector{},
		AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/${namespace}/*"},
	}
}

// TestInvalidProvidersAreRejected creates each broken provider against the
// real API server and expects a rejection whose message names the field.
func TestInvalidProvidersAreRejected(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		mutate   func(*stsbindv1.ClusterSTSProviderSpec)
		wantText []string
	}{
		"no namespaceSelector":    {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.NamespaceSelector = nil }, wantText: []string{"spec.namespaceSelector"}},
		"no allowedRoleArns":      {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.AllowedRoleARNs = nil }, wantText: []string{"spec.allowedRoleArns"}},
		"role pattern not an ARN": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"*"} }, wantText: []string{"spec.allowedRoleArns", "role ARN pattern"}},
		"policy ARN as role": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"arn:aws:iam::aws:policy/x"}
		}, wantText: []string{"spec.allowedRoleArns"}},
		"unknown substitution": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/${name}"}
		}, wantText: []string{"spec.allowedRoleArns", "${namespace} and ${serviceAccount}"}},
		"duplicate patterns": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.AllowedRoleARNs = append(s.AllowedRoleARNs, s.AllowedRoleARNs[0])
		}, wantText: []string{"spec.allowedRoleArns", "Duplicate"}},
		"endpoint without scheme":  {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.Endpoint = "sts.amazonaws.com" }, wantText: []string{"spec.endpoint", "http(s) URL"}},
		"endpoint ftp":             {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.Endpoint = "ftp://sts.amazonaws.com" }, wantText: []string{"spec.endpoint"}},
		"audience with space":      {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.Audience = "sts amazonaws" }, wantText: []string{"spec.audience", "whitespace"}},
		"region with underscore":   {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.Region = "eu_west_1" }, wantText: []string{"spec.region"}},
		"maxSessionDuration prose": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.MaxSessionDuration = "1 hour" }, wantText: []string{"spec.maxSessionDuration"}},
		"min above max": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.MinSessionDuration, s.MaxSessionDuration = "2h", "1h"
		}, wantText: []string{"spec.minSessionDuration", "must not be longer than maxSessionDuration"}},
		"both identities": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.Identity = &stsbindv1.ProviderIdentity{WebIdentity: &stsbindv1.WebIdentity{}, AccessKeys: &stsbindv1.AccessKeys{SecretName: "keys"}}
		}, wantText: []string{"spec.identity", "exactly one"}},
		"no identity": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.Identity = &stsbindv1.ProviderIdentity{} }, wantText: []string{"spec.identity", "exactly one"}},
		"unknown keys op": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "keys", Operation: "AssumeRoleWithSAML"}}
		}, wantText: []string{"spec.identity.accessKeys.operation"}},
		"keys without a Secret": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{}}
		}, wantText: []string{"spec.identity.accessKeys.secretName"}},
		"token lifetime under kubelet's 600 s": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.Identity = &stsbindv1.ProviderIdentity{WebIdentity: &stsbindv1.WebIdentity{TokenExpirationSeconds: 599}}
		}, wantText: []string{"spec.identity.webIdentity.tokenExpirationSeconds", "600"}},
		"tags neither on nor off": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.AutomaticSessionTags = "Sometimes" }, wantText: []string{"spec.automaticSessionTags"}},
		"qps zero":                {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.RateLimit.QPS = -1 }, wantText: []string{"spec.rateLimit.qps"}},
		"timeout 10m":             {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) { s.Timeout = "10m" }, wantText: []string{"spec.timeout", "between 1s and 5m"}},
		"65 patterns": {mutate: func(s *stsbindv1.ClusterSTSProviderSpec) {
			s.AllowedRoleARNs = nil
			for i := range 65 {
				s.AllowedRoleARNs = append(s.AllowedRoleARNs, stsbindv1.RoleARNPattern(fmt.Sprintf("arn:aws:iam::123456789012:role/r%d", i)))
			}
		}, wantText: []string{"spec.allowedRoleArns", "64"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := &stsbindv1.ClusterSTSProvider{
				ObjectMeta: metav1.ObjectMeta{Name: "invalid-" + strings.ReplaceAll(name, " ", "-")},
				Spec:       validProviderSpec(),
			}
			tc.mutate(&p.Spec)
			err := k8s.Create(context.Background(), p)
			if err == nil {
				t.Fatalf("the API server accepted %s; want a rejection mentioning %q", name, tc.wantText)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestProviderDefaults: what the API server fills in, and the shapes it must
// let through.
func TestProviderDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: validProviderSpec()}
	p.Spec.AllowedRoleARNs = append(p.Spec.AllowedRoleARNs,
		"arn:minio:iam:::role/*", "arn:*:iam::*:role/${namespace}-${serviceAccount}", "arn:aws-us-gov:iam::123456789012:role/team/a/*")
	p.Spec.Endpoint = "http://10.88.0.1:9000"
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	var got stsbindv1.ClusterSTSProvider
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.AutomaticSessionTags != "Enabled" {
		t.Errorf("automaticSessionTags defaulted to %q, want Enabled", got.Spec.AutomaticSessionTags)
	}
	keys := &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "keys-default-op"}, Spec: validProviderSpec()}
	keys.Spec.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "iam-user"}}
	if err := k8s.Create(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if keys.Spec.Identity.AccessKeys.Operation != stsbindv1.OperationAssumeRole {
		t.Errorf("accessKeys.operation defaulted to %q, want AssumeRole", keys.Spec.Identity.AccessKeys.Operation)
	}
	if got.Spec.TokenExpirationSecondsOrDefault() != 86400 {
		t.Errorf("projected token lifetime of a provider without identity = %d, want 86400", got.Spec.TokenExpirationSecondsOrDefault())
	}
	web := &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "web-default-expiry"}, Spec: validProviderSpec()}
	web.Spec.Identity = &stsbindv1.ProviderIdentity{WebIdentity: &stsbindv1.WebIdentity{}}
	if err := k8s.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	if web.Spec.Identity.WebIdentity.TokenExpirationSeconds != 86400 {
		t.Errorf("webIdentity.tokenExpirationSeconds defaulted to %d, want 86400", web.Spec.Identity.WebIdentity.TokenExpirationSeconds)
	}
	if got.Spec.Audience != "sts.amazonaws.com" || got.Spec.Timeout != "30s" || got.Spec.RateLimit.QPS != 100 || got.Spec.RateLimit.Burst != 200 {
		t.Errorf("defaults = audience %q, timeout %q, rateLimit %+v; want sts.amazonaws.com, 30s, 100/200",
			got.Spec.Audience, got.Spec.Timeout, got.Spec.RateLimit)
	}
}
