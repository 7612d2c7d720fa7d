package controllers

import (
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
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

func TestSpecHash(t *testing.T) {
	t.Parallel()
	base := stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"},
		Spec:       stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", RoleARN: "arn:aws:iam::123456789012:role/r"},
	}
	hash := func(mut func(*stsbindv1.IAMRoleBinding), region string) string {
		b := base.DeepCopy()
		if mut != nil {
			mut(b)
		}
		e, err := effective(b, region)
		if err != nil {
			t.Fatal(err)
		}
		return e.hash()
	}
	h0 := hash(nil, "us-east-1")
	same := map[string]func(*stsbindv1.IAMRoleBinding){
		"explicit defaults": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.Audience = "sts.amazonaws.com"
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
		"audience":           func(b *stsbindv1.IAMRoleBinding) { b.Spec.Audience = "minio" },
		"sessionDuration":    func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionDuration = "2h" },
		"sessionName":        func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionName = "named" },
		"sessionPolicy":      func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionPolicy = "{}" },
		"policyArns": func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.PolicyARNs = []stsbindv1.PolicyARN{"arn:aws:iam::aws:policy/P"}
		},
		"region":      func(b *stsbindv1.IAMRoleBinding) { b.Spec.Region = "eu-west-1" },
		"stsEndpoint": func(b *stsbindv1.IAMRoleBinding) { b.Spec.STSEndpoint = "https://sts.example" },
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
