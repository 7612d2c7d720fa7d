package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
)

// iamUser gives the fake STS a user with fresh keys and puts them into a
// Secret of the operator's namespace, as the admin would. It returns the
// Secret's name and the key id.
func (f *fixture) iamUser() (secret, keyID string) {
	f.t.Helper()
	keyID = "AKIA" + strings.ToUpper(rand.String(16))
	secretKey := rand.String(40)
	fake.AddUser("user-"+f.ns, keyID, secretKey, "123456789012")
	secret = "keys-" + f.ns
	f.create(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testOperatorNamespace, Name: secret},
		StringData: map[string]string{controllers.KeyAccessKeyID: keyID, controllers.KeySecretAccessKey: secretKey},
	})
	return secret, keyID
}

func keysIdentity(secret string, op stsbindv1.KeysOperation) func(*stsbindv1.ClusterSTSProviderSpec) {
	return func(s *stsbindv1.ClusterSTSProviderSpec) {
		s.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: secret, Operation: op}}
	}
}

// callsOf returns the fake STS's calls of one operation signed by keyID, or
// with sessionName.
func callsOf(op, keyID, sessionName string) []ststest.Call {
	var out []ststest.Call
	for _, c := range fake.OperationCalls(op) {
		if (keyID != "" && c.CallerAccessKeyID == keyID) || (sessionName != "" && (c.SessionName == sessionName || c.FederatedName == sessionName)) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fixture) automaticTags(binding string) map[string]string {
	return map[string]string{
		"kubernetes-namespace": f.ns, "kubernetes-service-account": f.sa,
		"stsbind-binding": binding, "stsbind-cluster": testClusterName,
	}
}

// TestAccessKeySources: each operation a provider may use with an IAM
// user's keys reaches STS signed with those keys, with the parameters and
// tags it should carry, and no ServiceAccount token is minted.
func TestAccessKeySources(t *testing.T) {
	t.Parallel()
	policy := `{"Statement":[{"Sid":"1","Action":["s3:ListBucket"],"Effect":"Allow","Resource":"arn:aws:s3:::YourBucketName"}]}`
	tests := map[stsbindv1.KeysOperation]struct {
		mutate     func(*stsbindv1.IAMRoleBinding, *fixture)
		wantCaller string // part of the verified caller ARN
	}{
		stsbindv1.OperationAssumeRole: {
			mutate:     func(*stsbindv1.IAMRoleBinding, *fixture) {},
			wantCaller: ":assumed-role/",
		},
		stsbindv1.OperationGetFederationToken: {
			mutate:     func(b *stsbindv1.IAMRoleBinding, _ *fixture) { b.Spec.RoleARN = ""; b.Spec.SessionPolicy = policy },
			wantCaller: ":federated-user/",
		},
		stsbindv1.OperationGetSessionToken: {
			mutate:     func(b *stsbindv1.IAMRoleBinding, _ *fixture) { b.Spec.RoleARN = "" },
			wantCaller: ":user/user-",
		},
	}
	for op, tc := range tests {
		t.Run(string(op), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.serviceAccount()
			secret, keyID := f.iamUser()
			p := f.provider(keysIdentity(secret, op))
			f.binding("keys", func(b *stsbindv1.IAMRoleBinding) { useProvider(p)(b); tc.mutate(b, f) })
			b := f.waitReady("keys", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)

			calls := callsOf(string(op), keyID, "")
			if len(calls) != 1 {
				t.Fatalf("%d %s calls signed with the provider's key, want 1", len(calls), op)
			}
			c := calls[0]
			if c.CallerARN == "" || c.Error != "" {
				t.Errorf("the call was not accepted as signed by the user: caller %q, error %q", c.CallerARN, c.Error)
			}
			if n := tokensMinted.get(f.ns + "/" + f.sa); n != 0 {
				t.Errorf("%d ServiceAccount tokens minted for a keys provider, want 0", n)
			}
			switch op {
			case stsbindv1.OperationAssumeRole:
				if c.RoleARN != f.role || c.SessionName != f.ns+".keys" {
					t.Errorf("AssumeRole of %s as %s", c.RoleARN, c.SessionName)
				}
			case stsbindv1.OperationGetFederationToken:
				if c.FederatedName != f.ns+".keys" || c.Policy != policy {
					t.Errorf("GetFederationToken name %q policy %q", c.FederatedName, c.Policy)
				}
			}
			wantTags := f.automaticTags("keys")
			if op == stsbindv1.OperationGetSessionToken {
				wantTags = nil
			}
			if diff := cmp.Diff(wantTags, c.Tags); diff != "" {
				t.Errorf("session tags (-want +got):\n%s", diff)
			}
			cond := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionIdentityVerified)
			if cond == nil || cond.Status != metav1.ConditionTrue || b.Status.Account != "123456789012" || !strings.Contains(b.Status.CallerARN, tc.wantCaller) {
				t.Errorf("identity: %+v, account %q, caller %q (want one containing %q)", cond, b.Status.Account, b.Status.CallerARN, tc.wantCaller)
			}
			// The keys appear nowhere in what the tenant can read.
			s := f.secret("keys")
			for k, v := range s.Data {
				if strings.Contains(string(v), keyID) {
					t.Errorf("the binding's Secret key %s carries the provider's access key id", k)
				}
			}
		})
	}
}

// TestChainedRole: the first session assumes the chained role; the second
// AssumeRole is signed with the first session's keys and carries the
// ExternalId, the automatic and the binding's tags, the transitive keys and
// the SourceIdentity. The pods get the chained role's credentials.
func TestChainedRole(t *testing.T) {
	t.Parallel()
	for _, source := range []string{"web identity", "GetSessionToken"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.serviceAccount()
			var p string
			if source == "web identity" {
				p = f.provider(nil)
			} else {
				secret, _ := f.iamUser()
				p = f.provider(keysIdentity(secret, stsbindv1.OperationGetSessionToken))
			}
			chained := "arn:aws:iam::123456789012:role/cross-" + rand.String(6)
			f.binding("chain", func(b *stsbindv1.IAMRoleBinding) {
				useProvider(p)(b)
				if source != "web identity" {
					b.Spec.RoleARN = ""
				}
				b.Spec.ChainedRole = &stsbindv1.ChainedRole{RoleARN: chained, ExternalID: "partner-42",
					SessionTags: map[string]string{"team": "a"}, TransitiveTagKeys: []string{"team", "kubernetes-namespace"}, SourceIdentity: "src." + f.ns}
			})
			b := f.waitReady("chain", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
			calls := fake.Calls(chained)
			if len(calls) != 1 {
				t.Fatalf("%d calls for the chained role, want 1", len(calls))
			}
			c := calls[0]
			want := f.automaticTags("chain")
			want["team"] = "a"
			if diff := cmp.Diff(want, c.Tags); diff != "" {
				t.Errorf("chained session tags (-want +got):\n%s", diff)
			}
			if c.Operation != ststest.OpAssumeRole || c.ExternalID != "partner-42" || c.SourceIdentity != "src."+f.ns ||
				!slices.Equal(c.TransitiveTagKeys, []string{"team", "kubernetes-namespace"}) || c.DurationSeconds != 3600 {
				t.Errorf("chained call: %+v", c)
			}
			// Signed by the session the first call returned.
			first := slices.IndexFunc(fake.Issued(), func(i ststest.Issued) bool { return i.AccessKeyID == c.CallerAccessKeyID })
			if first < 0 || c.CallerARN == "" {
				t.Errorf("the chained call was signed by %q (%q), not by an issued session", c.CallerAccessKeyID, c.CallerARN)
			}
			s := f.secret("chain")
			if string(s.Data["AWS_ACCESS_KEY_ID"]) != c.Answered {
				t.Errorf("the Secret holds %q, not the chained role's %q", s.Data["AWS_ACCESS_KEY_ID"], c.Answered)
			}
			if !strings.Contains(b.Status.CallerARN, ":assumed-role/"+strings.TrimPrefix(chained, "arn:aws:iam::123456789012:role/")+"/") {
				t.Errorf("caller %q is not the chained role", b.Status.CallerARN)
			}
		})
	}
}

// TestProviderKeyFaults: what the admin can get wrong with the keys, and a
// rotation.
func TestProviderKeyFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.serviceAccount()

	// No Secret yet: the binding waits and says which Secret is missing.
	missing := "absent-" + f.ns
	p := f.provider(keysIdentity(missing, stsbindv1.OperationAssumeRole))
	f.binding("no-keys", useProvider(p))
	b := f.waitReady("no-keys", metav1.ConditionFalse, stsbindv1.ReasonProviderKeysMissing)
	if msg := b.Status.Conditions[0].Message; !strings.Contains(msg, testOperatorNamespace+"/"+missing) {
		t.Errorf("message does not name the Secret: %s", msg)
	}

	// A wrong secret key: STS refuses the signature.
	secret, keyID := f.iamUser()
	var s corev1.Secret
	if err := k8s.Get(ctx, keyOf(testOperatorNamespace, secret), &s); err != nil {
		t.Fatal(err)
	}
	s.Data[controllers.KeySecretAccessKey] = []byte("not-the-secret")
	if err := k8s.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	q := f.provider(keysIdentity(secret, stsbindv1.OperationAssumeRole))
	f.binding("bad-signature", useProvider(q))
	f.waitReady("bad-signature", metav1.ConditionFalse, "SignatureDoesNotMatch")

	// The admin rotates the key: the old one is deleted at IAM, the Secret
	// gets the new one, and the next issuance (here a spec change) uses it
	// without a restart.
	newID, newSecret := "AKIA"+strings.ToUpper(rand.String(16)), rand.String(40)
	fake.AddUser("user-"+f.ns, newID, newSecret, "123456789012")
	fake.DeleteAccessKey(keyID)
	if err := k8s.Get(ctx, keyOf(testOperatorNamespace, secret), &s); err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{controllers.KeyAccessKeyID: []byte(newID), controllers.KeySecretAccessKey: []byte(newSecret)}
	if err := k8s.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	var bad stsbindv1.IAMRoleBinding
	if err := f.get(&bad, "bad-signature"); err != nil {
		t.Fatal(err)
	}
	f.update(&bad, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "rotated" })
	f.waitReady("bad-signature", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if n := len(callsOf(ststest.OpAssumeRole, newID, "")); n != 1 {
		t.Errorf("%d calls with the rotated key, want 1", n)
	}
}

// TestAutomaticTagsOff: a provider without automatic tags sends none.
func TestAutomaticTagsOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	secret, keyID := f.iamUser()
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) {
		keysIdentity(secret, stsbindv1.OperationAssumeRole)(s)
		s.AutomaticSessionTags = "Disabled"
	})
	f.binding("plain", useProvider(p))
	f.waitReady("plain", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	if c := callsOf(ststest.OpAssumeRole, keyID, ""); len(c) != 1 || len(c[0].Tags) != 0 {
		t.Errorf("calls %+v, want one without tags", c)
	}
}

// TestIdentityNotVerified: at a server without GetCallerIdentity (here a
// second fake answering it as MinIO does) the credentials are issued and
// kept, and the identity is marked not verified.
func TestIdentityNotVerified(t *testing.T) {
	t.Parallel()
	other := ststest.NewServer()
	defer other.Close()
	other.SetFault(ststest.OpGetCallerIdentity, &ststest.Fault{Status: 400, Code: "InvalidAction", Message: "Unsupported action GetCallerIdentity"})
	f := newFixture(t)
	f.serviceAccount()
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.Endpoint = other.URL })
	f.binding("unverified", useProvider(p))
	b := f.waitReady("unverified", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionIdentityVerified)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != stsbindv1.ReasonIdentityNotVerified || b.Status.Account != "" {
		t.Errorf("IdentityVerified %+v, account %q; want False/NotVerified and no account", c, b.Status.Account)
	}
	if !strings.Contains(c.Message, "Unsupported action") {
		t.Errorf("message lacks the server's text: %s", c.Message)
	}
}

func keyOf(namespace, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: namespace, Name: name}
}
