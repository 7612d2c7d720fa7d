package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/testrig/moto"
)

// operatorNamespace holds the providers' IAM user keys, as the chart's
// release namespace would.
const operatorNamespace = "stsbind-system"

// motoKeys is the keys Secret of the moto providers; moto takes any keys.
const motoKeys = "moto-user"

func createProviderKeys(ctx context.Context) error {
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		return err
	}
	return k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: motoKeys},
		StringData: map[string]string{controllers.KeyAccessKeyID: "AKIAMOTO" + strings.ToUpper(rand.String(12)), controllers.KeySecretAccessKey: rand.String(40)},
	})
}

// motoProvider creates a provider at moto with the given identity.
func motoProvider(t *testing.T, identity *stsbindv1.ProviderIdentity) string {
	t.Helper()
	p := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: "moto-" + rand.String(6)},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region: region, Endpoint: motoSTS.Endpoint, Identity: identity,
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:aws:iam::" + moto.Account + ":role/**", "arn:aws:iam::210987654321:role/**"},
		},
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p.Name
}

func keys(op stsbindv1.KeysOperation) *stsbindv1.ProviderIdentity {
	return &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: motoKeys, Operation: op}}
}

// TestEveryOperationAtMoto runs each identity source and operation, and a
// chained role, against moto: the controller's requests and its reading of
// the answers hold up against an implementation that is not ours. moto
// answers GetCallerIdentity, so every binding's identity is verified.
func TestEveryOperationAtMoto(t *testing.T) {
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::reports"}]}`
	role := "arn:aws:iam::" + moto.Account + ":role/k8s/reader"
	tests := map[string]struct {
		identity   *stsbindv1.ProviderIdentity
		mutate     func(*stsbindv1.IAMRoleBindingSpec)
		wantCaller string // a part of the verified caller ARN
		wantIssued string // a part of the ARN the issuing call answered
	}{
		"web identity": {
			identity: nil, mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = role },
			// Assumed-role ARNs carry the role's name, not its path (AWS too).
			wantCaller: ":assumed-role/reader/", wantIssued: ":assumed-role/reader/",
		},
		"keys with AssumeRole": {
			identity: keys(stsbindv1.OperationAssumeRole), mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = role },
			wantCaller: ":assumed-role/reader/", wantIssued: ":assumed-role/reader/",
		},
		"keys with GetFederationToken": {
			identity: keys(stsbindv1.OperationGetFederationToken), mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = ""; s.SessionPolicy = policy },
			// moto answers GetCallerIdentity for a federated session with its
			// default user (AWS would name the federated user); the issuing
			// call's answer names it.
			wantCaller: moto.Account, wantIssued: ":federated-user/",
		},
		"keys with GetSessionToken": {
			identity: keys(stsbindv1.OperationGetSessionToken), mutate: func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = "" },
			wantCaller: moto.Account,
		},
		"web identity then a chained role": {
			identity: nil, mutate: func(s *stsbindv1.IAMRoleBindingSpec) {
				s.RoleARN = role
				s.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/cross", ExternalID: "partner-42",
					SessionTags: map[string]string{"team": "a"}, TransitiveTagKeys: []string{"team"}, SourceIdentity: "e2e.app"}
			},
			wantCaller: "210987654321:assumed-role/cross/", wantIssued: ":assumed-role/cross/",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			p := motoProvider(t, tc.identity)
			binding := "op-" + rand.String(5)
			f.binding(binding, func(s *stsbindv1.IAMRoleBindingSpec) {
				s.ProviderRef = &stsbindv1.ProviderReference{Name: p}
				tc.mutate(s)
			})
			b := f.waitReady(binding, metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
			s := f.secret(binding)
			if len(s.Data["AWS_SESSION_TOKEN"]) == 0 || len(s.Data["AWS_ACCESS_KEY_ID"]) == 0 {
				t.Errorf("the Secret lacks credentials: keys %d", len(s.Data))
			}
			c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionIdentityVerified)
			if c == nil || c.Status != metav1.ConditionTrue {
				t.Fatalf("identity not verified: %+v (status %+v)", c, b.Status)
			}
			if b.Status.Account == "" || !strings.Contains(b.Status.CallerARN, tc.wantCaller) {
				t.Errorf("caller %q in account %q, want an ARN containing %q", b.Status.CallerARN, b.Status.Account, tc.wantCaller)
			}
			if !strings.Contains(b.Status.AssumedRoleARN, tc.wantIssued) {
				t.Errorf("assumedRoleArn %q, want one containing %q", b.Status.AssumedRoleARN, tc.wantIssued)
			}
			t.Logf("%s: %s; assumedRoleArn %q", name, c.Message, b.Status.AssumedRoleARN)
		})
	}
}

// TestMinIOHasNoGetCallerIdentity: against MinIO the credentials work and
// the identity is marked not verified, which is no failure.
func TestMinIOHasNoGetCallerIdentity(t *testing.T) {
	f := newFixture(t)
	f.binding("unverified", nil)
	b := f.waitReady("unverified", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionIdentityVerified)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != stsbindv1.ReasonIdentityNotVerified {
		t.Fatalf("IdentityVerified = %+v, want False/%s", c, stsbindv1.ReasonIdentityNotVerified)
	}
	t.Log(c.Message)
}
