package controllers

import (
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

var sessionNameShape = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func TestDefaultSessionName(t *testing.T) {
	t.Parallel()
	long63 := strings.Repeat("n", 63)
	tests := map[string]struct {
		ns, name string
		want     string // exact, or "" to check shape and uniqueness only
	}{
		"short":             {ns: "team-a", name: "s3-reader", want: "team-a.s3-reader"},
		"exactly 64":        {ns: strings.Repeat("a", 30), name: strings.Repeat("b", 33), want: strings.Repeat("a", 30) + "." + strings.Repeat("b", 33)},
		"longest names":     {ns: long63, name: long63},
		"long, dots inside": {ns: "ns", name: strings.Repeat("x.", 40) + "y"},
	}
	seen := map[string]string{}
	for name, tc := range tests {
		got := defaultSessionName(tc.ns, tc.name)
		if !sessionNameShape.MatchString(got) {
			t.Errorf("%s: %q is not a valid STS session name", name, got)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s share session name %q", name, other, got)
		}
		seen[got] = name
	}
	// Bindings that differ only past the cut still differ.
	a := defaultSessionName(long63, long63[:62]+"a")
	b := defaultSessionName(long63, long63[:62]+"b")
	if a == b {
		t.Errorf("long names collide: %q", a)
	}
}

// providerChanges change the provider a TestSpecHash case sees, by the
// binding annotation "provider-change".
var providerChanges = map[string]func(*stsbindv1.ClusterSTSProvider){
	"explicit audience": func(p *stsbindv1.ClusterSTSProvider) { p.Spec.Audience = "sts.amazonaws.com" },
	"audience":          func(p *stsbindv1.ClusterSTSProvider) { p.Spec.Audience = "minio" },
	"endpoint":          func(p *stsbindv1.ClusterSTSProvider) { p.Spec.Endpoint = "https://sts.example" },
	"region":            func(p *stsbindv1.ClusterSTSProvider) { p.Spec.Region = "eu-west-1" },
	"name":              func(p *stsbindv1.ClusterSTSProvider) { p.Name = "other" },
	"keys": func(p *stsbindv1.ClusterSTSProvider) {
		p.Spec.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "user"}}
	},
	"keys operation": func(p *stsbindv1.ClusterSTSProvider) {
		p.Spec.Identity = &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: "user", Operation: stsbindv1.OperationGetSessionToken}}
	},
	"tags off": func(p *stsbindv1.ClusterSTSProvider) { p.Spec.AutomaticSessionTags = "Disabled" },
}

func TestSpecHash(t *testing.T) {
	t.Parallel()
	base := stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"},
		Spec:       stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", RoleARN: "arn:aws:iam::123456789012:role/r"},
	}
	provider := stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "aws"}}
	hash := func(mut func(*stsbindv1.IAMRoleBinding), region string) string {
		b := base.DeepCopy()
		if mut != nil {
			mut(b)
		}
		p := provider.DeepCopy()
		if mp, ok := providerChanges[b.Annotations["provider-change"]]; ok {
			mp(p)
		}
		e, err := effective(b, p, region, "")
		if err != nil {
			t.Fatal(err)
		}
		return e.hash()
	}
	h0 := hash(nil, "us-east-1")
	same := map[string]func(*stsbindv1.IAMRoleBinding){
		"explicit defaults": func(b *stsbindv1.IAMRoleBinding) {
			b.Annotations = map[string]string{"provider-change": "explicit audience"}
			b.Spec.SessionDuration = "60m"
		},
		"refreshBefore":           func(b *stsbindv1.IAMRoleBinding) { b.Spec.RefreshBefore = "10m" },
		"injection":               func(b *stsbindv1.IAMRoleBinding) { b.Spec.Injection.Mode = stsbindv1.InjectionEnv },
		"explicit default region": func(b *stsbindv1.IAMRoleBinding) { b.Spec.Region = "us-east-1" },
	}
	for name, mut := range same {
		if hash(mut, "us-east-1") != h0 {
			t.Errorf("%s changed the hash; it does not change the credentials", name)
		}
	}
	differ := map[string]func(*stsbindv1.IAMRoleBinding){
		"serviceAccountName": func(b *stsbindv1.IAMRoleBinding) { b.Spec.ServiceAccountName = "other" },
		"roleArn":            func(b *stsbindv1.IAMRoleBinding) { b.Spec.RoleARN += "2" },
		"provider audience":  func(b *stsbindv1.IAMRoleBinding) { b.Annotations = map[string]string{"provider-change": "audience"} },
		"provider endpoint":  func(b *stsbindv1.IAMRoleBinding) { b.Annotations = map[string]string{"provider-change": "endpoint"} },
		"provider region":    func(b *stsbindv1.IAMRoleBinding) { b.Annotations = map[string]string{"provider-change": "region"} },
		"another provider": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: "other"}
			b.Annotations = map[string]string{"provider-change": "name"}
		},
		"sessionDuration": func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionDuration = "2h" },
		"sessionName":     func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionName = "named" },
		"sessionPolicy":   func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionPolicy = "{}" },
		"policyArns": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.PolicyARNs = []stsbindv1.PolicyARN{"arn:aws:iam::aws:policy/P"}
		},
		"region":            func(b *stsbindv1.IAMRoleBinding) { b.Spec.Region = "eu-west-1" },
		"provider identity": func(b *stsbindv1.IAMRoleBinding) { b.Annotations = map[string]string{"provider-change": "keys"} },
		"provider operation": func(b *stsbindv1.IAMRoleBinding) {
			b.Annotations = map[string]string{"provider-change": "keys operation"}
		},
		"provider tags off": func(b *stsbindv1.IAMRoleBinding) { b.Annotations = map[string]string{"provider-change": "tags off"} },
		"chained role": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x"}
		},
		"chained externalId": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x", ExternalID: "e1"}
		},
		"chained tag": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.ChainedRole = &stsbindv1.ChainedRole{RoleARN: "arn:aws:iam::210987654321:role/x", SessionTags: map[string]string{"team": "a"}}
		},
	}
	for name, mut := range differ {
		if hash(mut, "us-east-1") == h0 {
			t.Errorf("%s did not change the hash", name)
		}
	}
	if hash(nil, "eu-west-1") == h0 {
		t.Error("a new --default-region did not change the hash of a binding without spec.region")
	}
}

// TestHeldFromCachedSecret: the cache keeps only a hash of the data, and the
// decision reads the same from it as from the whole Secret.
func TestHeldFromCachedSecret(t *testing.T) {
	t.Parallel()
	b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"},
		Spec: stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", RoleARN: "arn:aws:iam::123456789012:role/r"}}
	spec, err := effective(b, &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: "aws"}}, "us-east-1", "")
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := credentials.Credentials{AccessKeyID: "ASIA1", SecretAccessKey: "s", SessionToken: "t", Expiration: issued.Add(time.Hour)}
	written := newSecret(b)
	renderSecret(written, b, c, spec, issued)
	transform := SecretCache().Transform

	tests := map[string]struct {
		edit       func(*corev1.Secret)
		wantIntact bool
	}{
		"as written":             {edit: func(*corev1.Secret) {}, wantIntact: true},
		"data edited":            {edit: func(s *corev1.Secret) { s.Data[credentials.KeyConfigFile] = []byte("[default]\n") }},
		"key removed":            {edit: func(s *corev1.Secret) { delete(s.Data, credentials.KeySessionToken) }},
		"hash annotation edited": {edit: func(s *corev1.Secret) { s.Annotations[stsbindv1.AnnotationDataHash] = "0" }},
		"type changed":           {edit: func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			live := written.DeepCopy()
			tc.edit(live)
			obj, err := transform(live.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			cached := obj.(*corev1.Secret)
			if len(cached.Data) != 1 || cached.Data[credentials.KeySecretAccessKey] != nil {
				t.Fatalf("the cached Secret keeps %d data keys", len(cached.Data))
			}
			for from, s := range map[string]*corev1.Secret{"live read": live, "cache": cached} {
				h := heldFromSecret(s)
				if h.Intact != tc.wantIntact || !h.Expiration.Equal(c.Expiration) || h.SpecHash != spec.hash() {
					t.Errorf("from the %s: intact %v (want %v), expiration %s, spec hash match %v", from, h.Intact, tc.wantIntact, h.Expiration, h.SpecHash == spec.hash())
				}
			}
			// A second pass of the transform (a resync) changes nothing.
			again, _ := transform(cached.DeepCopy())
			if heldFromSecret(again.(*corev1.Secret)).Intact != tc.wantIntact {
				t.Error("transforming twice changes the verdict")
			}
		})
	}
}
