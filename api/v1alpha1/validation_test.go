package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = env.Client
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func validSpec() stsbindv1.IAMRoleBindingSpec {
	return stsbindv1.IAMRoleBindingSpec{
		ServiceAccountName: "app",
		RoleARN:            "arn:aws:iam::123456789012:role/s3-reader",
	}
}

// TestInvalidBindingsAreRejected creates each broken binding against the real
// API server and expects a rejection whose message names the field.
func TestInvalidBindingsAreRejected(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		name     string // metadata.name; default from the case
		mutate   func(*stsbindv1.IAMRoleBindingSpec)
		wantText []string // each must appear in the error
	}{
		"empty serviceAccountName":         {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.ServiceAccountName = "" }, wantText: []string{"spec.serviceAccountName"}},
		"serviceAccountName uppercase":     {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.ServiceAccountName = "App" }, wantText: []string{"spec.serviceAccountName", "DNS subdomain"}},
		"serviceAccountName other ns form": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.ServiceAccountName = "other/app" }, wantText: []string{"spec.serviceAccountName"}},
		"serviceAccountName too long":      {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.ServiceAccountName = strings.Repeat("a", 254) }, wantText: []string{"spec.serviceAccountName", "253"}},
		"roleArn not an ARN":               {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "s3-reader" }, wantText: []string{"spec.roleArn", "IAM role ARN"}},
		"roleArn user not role":            {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "arn:aws:iam::123456789012:user/bob" }, wantText: []string{"spec.roleArn"}},
		"roleArn short account":            {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "arn:aws:iam::12345:role/x" }, wantText: []string{"spec.roleArn"}},
		"roleArn name too long": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.RoleARN = "arn:aws:iam::123456789012:role/" + strings.Repeat("r", 65)
		}, wantText: []string{"spec.roleArn"}},
		"roleArn uppercase partition":        {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "arn:AWS:iam::123456789012:role/x" }, wantText: []string{"spec.roleArn"}},
		"sessionDuration prose":              {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "1 hour" }, wantText: []string{"spec.sessionDuration", "1h, 90m"}},
		"sessionDuration days":               {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "1d" }, wantText: []string{"spec.sessionDuration"}},
		"sessionDuration too short":          {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "14m" }, wantText: []string{"spec.sessionDuration", "between 15m and 12h"}},
		"sessionDuration too long":           {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "12h1s" }, wantText: []string{"spec.sessionDuration", "between 15m and 12h"}},
		"sessionDuration negative":           {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "-1h" }, wantText: []string{"spec.sessionDuration"}},
		"refreshBefore prose":                {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RefreshBefore = "ten minutes" }, wantText: []string{"spec.refreshBefore"}},
		"refreshBefore negative":             {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RefreshBefore = "-5m" }, wantText: []string{"spec.refreshBefore", "non-negative"}},
		"refreshBefore 0s":                   {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RefreshBefore = "0s" }, wantText: []string{"spec.refreshBefore", "at least 5m", "kubelet"}},
		"refreshBefore 4m59s":                {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RefreshBefore = "4m59s" }, wantText: []string{"spec.refreshBefore", "at least 5m"}},
		"refreshBefore equals session":       {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "1h"; s.RefreshBefore = "1h" }, wantText: []string{"refreshBefore must be shorter than sessionDuration minus 5m"}},
		"refreshBefore within 5m of session": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "30m"; s.RefreshBefore = "26m" }, wantText: []string{"refreshBefore must be shorter than sessionDuration minus 5m"}},
		"refreshBefore vs default session":   {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RefreshBefore = "2h" }, wantText: []string{"refreshBefore must be shorter than sessionDuration minus 5m"}},
		"sessionName one char":               {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "a" }, wantText: []string{"spec.sessionName"}},
		"sessionName with space":             {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "my session" }, wantText: []string{"spec.sessionName", "letters, digits"}},
		"sessionName 65 chars":               {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = strings.Repeat("s", 65) }, wantText: []string{"spec.sessionName", "64"}},
		"sessionPolicy 2049 chars":           {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionPolicy = strings.Repeat(" ", 2049) }, wantText: []string{"spec.sessionPolicy", "2048"}},
		"11 policy ARNs": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			for i := range 11 {
				s.PolicyARNs = append(s.PolicyARNs, stsbindv1.PolicyARN(fmt.Sprintf("arn:aws:iam::123456789012:policy/p%d", i)))
			}
		}, wantText: []string{"spec.policyArns", "10"}},
		"duplicate policy ARNs": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.PolicyARNs = []stsbindv1.PolicyARN{"arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/ReadOnlyAccess"}
		}, wantText: []string{"spec.policyArns", "Duplicate"}},
		"policy ARN is a role": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.PolicyARNs = []stsbindv1.PolicyARN{"arn:aws:iam::123456789012:role/x"}
		}, wantText: []string{"spec.policyArns", "policy ARN"}},
		"region with underscore":     {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.Region = "eu_west_1" }, wantText: []string{"spec.region"}},
		"providerRef name uppercase": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.ProviderRef = &stsbindv1.ProviderReference{Name: "AWS"} }, wantText: []string{"spec.providerRef.name", "DNS subdomain"}},
		"providerRef without name":   {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.ProviderRef = &stsbindv1.ProviderReference{} }, wantText: []string{"spec.providerRef.name"}},
		"chained session of 2h": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.SessionDuration = "2h"
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x"}
		}, wantText: []string{"spec.sessionDuration", "chained role session to 1 hour"}},
		"chained with default 1h is fine but 61m is not": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.SessionDuration = "61m"
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x"}
		}, wantText: []string{"chained role session to 1 hour"}},
		"chained role not an ARN": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "x"}
		}, wantText: []string{"spec.chainedRole.roleArn"}},
		"chained tag with an automatic key": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x", SessionTags: map[string]string{"kubernetes-namespace": "someone-else"}}
		}, wantText: []string{"spec.chainedRole.sessionTags", "automatic tag"}},
		"transitive key that is no tag": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x", TransitiveTagKeys: []string{"team"}}
		}, wantText: []string{"spec.chainedRole.transitiveTagKeys"}},
		"externalId with space": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x", ExternalID: "a b"}
		}, wantText: []string{"spec.chainedRole.externalId"}},
		"secretName uppercase":           {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.SecretName = "My-Secret" }, wantText: []string{"spec.secretName", "DNS subdomain"}},
		"injection mode unknown":         {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Mode = "Sidecar" }, wantText: []string{"spec.injection.mode", "Files"}},
		"injection container bad name":   {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Containers = []string{"App_1"} }, wantText: []string{"spec.injection.containers"}},
		"injection duplicate containers": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Containers = []string{"app", "app"} }, wantText: []string{"spec.injection.containers", "Duplicate"}},
		"binding name 64 chars":          {name: strings.Repeat("b", 64), wantText: []string{"metadata.name", "63"}},
		"WebIdentity without a role": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.RoleARN = stsbindv1.InjectionWebIdentity, ""
		}, wantText: []string{"spec.roleArn", "WebIdentity needs roleArn"}},
		"WebIdentity with a chained role": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.SessionDuration = stsbindv1.InjectionWebIdentity, "1h"
			s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x"}
		}, wantText: []string{"spec.chainedRole", "cannot be used with injection mode WebIdentity"}},
		"WebIdentity with a session policy": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.SessionPolicy = stsbindv1.InjectionWebIdentity, `{"Version":"2012-10-17","Statement":[]}`
		}, wantText: []string{"spec.sessionPolicy", "no session policy with AssumeRoleWithWebIdentity"}},
		"WebIdentity with policy ARNs": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.PolicyARNs = stsbindv1.InjectionWebIdentity, []stsbindv1.PolicyARN{"arn:aws:iam::aws:policy/ReadOnlyAccess"}
		}, wantText: []string{"sessionPolicy and policyArns cannot be used with injection mode WebIdentity"}},
		"WebIdentity with a 2h session": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.SessionDuration = stsbindv1.InjectionWebIdentity, "2h"
		}, wantText: []string{"spec.sessionDuration", "WebIdentity takes sessionDuration 1h only"}},
		"WebIdentity with refreshBefore": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.RefreshBefore = stsbindv1.InjectionWebIdentity, "10m"
		}, wantText: []string{"spec.refreshBefore", "refreshes its credentials itself"}},
		"WebIdentity with restartOnRotation": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.Injection.RestartOnRotation = stsbindv1.InjectionWebIdentity, stsbindv1.RestartRollout
		}, wantText: []string{"spec.injection.restartOnRotation"}},
		"WebIdentity with a secretName": {mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection.Mode, s.SecretName = stsbindv1.InjectionWebIdentity, "creds"
		}, wantText: []string{"spec.secretName", "no Secret is written"}},
	}
	ctx := context.Background()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := &stsbindv1.IAMRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: tc.name},
				Spec:       validSpec(),
			}
			if b.Name == "" {
				b.Name = "invalid-" + strings.ToLower(strings.NewReplacer(" ", "-", "_", "-").Replace(name))
				if len(b.Name) > 63 {
					b.Name = b.Name[:63]
				}
				b.Name = strings.Trim(b.Name, "-")
			}
			if tc.mutate != nil {
				tc.mutate(&b.Spec)
			}
			err := k8s.Create(ctx, b)
			if err == nil {
				t.Fatalf("the API server accepted %s; want a rejection mentioning %q", name, tc.wantText)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			t.Log(err)
			if tc.name == "" && strings.Contains(err.Error(), "metadata.name") {
				t.Errorf("the test's own binding name was rejected too: %v", err)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
	t.Logf("%d invalid IAMRoleBindings checked against the API server", len(tests))
}

// TestValidBindingsAreAccepted covers the shapes the rules must let through,
// including STS-compatible servers' ARNs and the defaults.
func TestValidBindingsAreAccepted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := map[string]func(*stsbindv1.IAMRoleBindingSpec){
		"minimal": nil,
		"everything": func(s *stsbindv1.IAMRoleBindingSpec) {
			s.SessionDuration = "12h"
			s.RefreshBefore = "6h"
			s.SessionName = "team-a.s3-reader@x=y,z"
			s.SessionPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
			s.PolicyARNs = []stsbindv1.PolicyARN{"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "arn:aws-us-gov:iam::123456789012:policy/team/a/custom"}
			s.Region = "us-gov-west-1"
			s.SecretName = "s3-reader.aws"
			s.Injection = stsbindv1.Injection{Mode: stsbindv1.InjectionEnv, Containers: []string{"app", "init-db"}}
		},
		"minio role arn and a provider": func(s *stsbindv1.IAMRoleBindingSpec) {
			s.RoleARN = "arn:minio:iam:::role/dummy-internal"
			s.ProviderRef = &stsbindv1.ProviderReference{Name: "minio.local"}
		},
		"chained role with tags": func(s *stsbindv1.IAMRoleBindingSpec) {
			s.SessionDuration = "1h"
			s.ChainedRole = &stsbindv1.ChainedRole{
				RoleARN: "arn:aws:iam::210987654321:role/cross", ExternalID: "partner-42",
				SessionTags: map[string]string{"team": "a"}, TransitiveTagKeys: []string{"team", "kubernetes-namespace"}, SourceIdentity: "team-a.app",
			}
		},
		"no role (a GetSessionToken provider)": func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "" },
		"role with path": func(s *stsbindv1.IAMRoleBindingSpec) {
			s.RoleARN = "arn:aws-cn:iam::123456789012:role/team/a/reader"
		},
		"15m session, refreshBefore 5m": func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "15m"; s.RefreshBefore = "5m" },
		"compound durations":            func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = "1h30m"; s.RefreshBefore = "1h20m" },
		"WebIdentity with what the SDKs take": func(s *stsbindv1.IAMRoleBindingSpec) {
			s.Injection = stsbindv1.Injection{Mode: stsbindv1.InjectionWebIdentity, Containers: []string{"app"}}
			s.SessionDuration, s.SessionName, s.Region = "60m", "team-a.app", "eu-west-1"
			s.ProviderRef = &stsbindv1.ProviderReference{Name: "aws"}
		},
	}
	i := 0
	for name, mutate := range tests {
		i++
		b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("valid-%d", i)}, Spec: validSpec()}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if mutate != nil {
				mutate(&b.Spec)
			}
			if err := k8s.Create(ctx, b); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// TestSecretNameIsImmutable: pods mount the Secret by name, so a binding
// cannot move its credentials to another Secret under running pods.
func TestSecretNameIsImmutable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, tc := range map[string]struct{ from, to string }{
		"set to another name": {from: "creds-a", to: "creds-b"},
		"set where defaulted": {from: "", to: "creds-b"},
		"unset where set":     {from: "creds-a", to: ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "immutable-" + strings.ReplaceAll(name, " ", "-")}, Spec: validSpec()}
			b.Spec.SecretName = tc.from
			if err := k8s.Create(ctx, b); err != nil {
				t.Fatal(err)
			}
			b.Spec.SessionDuration = "2h" // other fields still change
			if err := k8s.Update(ctx, b); err != nil {
				t.Fatalf("a sessionDuration change was refused: %v", err)
			}
			b.Spec.SecretName = tc.to
			err := k8s.Update(ctx, b)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.secretName is immutable") {
				t.Fatalf("want Invalid naming spec.secretName is immutable, got %v", err)
			}
		})
	}
}

// TestDefaults checks what the API server fills in.
func TestDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "defaults"}, Spec: validSpec()}
	if err := k8s.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	got := &stsbindv1.IAMRoleBinding{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(b), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.SessionDuration != "1h" || got.Spec.Injection.Mode != stsbindv1.InjectionFiles || got.Spec.ProviderRef != nil {
		t.Errorf("defaults = sessionDuration %q, injection.mode %q, providerRef %v; want 1h, Files, none (the controller's default provider)",
			got.Spec.SessionDuration, got.Spec.Injection.Mode, got.Spec.ProviderRef)
	}
	if got.Spec.RefreshBefore != "" {
		t.Errorf("refreshBefore defaulted to %q; the controller computes it from the actual lifetime", got.Spec.RefreshBefore)
	}
}

// TestSampleIsAccepted applies every object in config/samples with strict
// field validation: a sample with a field the API does not know fails.
func TestSampleIsAccepted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
	kinds := map[string]int{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(raw), "\n---") {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if u.Object == nil {
				continue
			}
			kinds[u.GetKind()]++
			if u.GetKind() == "IAMRoleBinding" {
				u.SetNamespace("samples")
				if err := ensureNamespace(ctx, "samples"); err != nil {
					t.Fatal(err)
				}
			}
			if err := k8s.Create(ctx, &u, client.FieldValidation("Strict")); err != nil {
				t.Errorf("%s: %s %s rejected: %v", filepath.Base(f), u.GetKind(), u.GetName(), err)
			}
		}
	}
	if kinds["IAMRoleBinding"] == 0 || kinds["ClusterSTSProvider"] == 0 {
		t.Errorf("config/samples holds %v; want at least one IAMRoleBinding and one ClusterSTSProvider", kinds)
	}
}

// TestOldFieldsAreRefused: a binding written for the first API, with
// spec.stsEndpoint and spec.audience, is refused by name instead of losing
// those fields silently (kubectl validates strictly by default).
func TestOldFieldsAreRefused(t *testing.T) {
	t.Parallel()
	for _, field := range []string{"stsEndpoint", "audience"} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "stsbind.dev/v1alpha1", "kind": "IAMRoleBinding",
			"metadata": map[string]any{"namespace": "default", "name": "old-" + strings.ToLower(field)},
			"spec":     map[string]any{"serviceAccountName": "app", "roleArn": "arn:aws:iam::123456789012:role/r", field: "https://attacker.example"},
		}}
		err := k8s.Create(context.Background(), u, client.FieldValidation("Strict"))
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.`+field+`"`) {
			t.Errorf("spec.%s: want a strict-decoding error naming the field, got %v", field, err)
		}
	}
}

func ensureNamespace(ctx context.Context, name string) error {
	err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
