package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
)

// provider creates a ClusterSTSProvider pointing at the fake STS; mutate
// changes its spec first. It is deleted when the test ends.
func (f *fixture) provider(mutate func(*stsbindv1.ClusterSTSProviderSpec)) string {
	f.t.Helper()
	p := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: "p-" + rand.String(8)},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Endpoint:          fake.URL,
			Audience:          testAudience,
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{testRoles},
		},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	f.create(p)
	f.t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p.Name
}

func useProvider(name string) func(*stsbindv1.IAMRoleBinding) {
	return func(b *stsbindv1.IAMRoleBinding) { b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: name} }
}

// refusedUntouched checks that nothing left for the binding: no token was
// minted for its ServiceAccount and STS never saw its role.
func (f *fixture) refusedUntouched(role string) {
	f.t.Helper()
	if n := tokensMinted.get(f.ns + "/" + f.sa); n != 0 {
		f.t.Errorf("%d tokens minted for %s/%s, want 0", n, f.ns, f.sa)
	}
	if n := fake.CallCount(role); n != 0 {
		f.t.Errorf("%d STS calls for %s, want 0", n, role)
	}
}

// TestNamespaceOutsideTheSelector: a tenant's binding in a namespace the
// provider does not select gets nothing, not even a token, until the admin
// labels the namespace.
func TestNamespaceOutsideTheSelector(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) {
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tenant.example/aws": "yes"}}
	})
	f.binding("outside", useProvider(p))
	b := f.waitReady("outside", metav1.ConditionFalse, stsbindv1.ReasonNamespaceNotAllowed)
	t.Log(meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady).Message)
	f.waitEvent("outside", corev1.EventTypeWarning, stsbindv1.ReasonNamespaceNotAllowed)
	f.refusedUntouched(f.role)
	if err := f.get(&corev1.Secret{}, "outside"); err == nil {
		t.Error("a Secret exists for a refused binding")
	}

	var ns corev1.Namespace
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: f.ns}, &ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels["tenant.example/aws"] = "yes"
	if err := k8s.Update(context.Background(), &ns); err != nil {
		t.Fatal(err)
	}
	f.waitReady("outside", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
}

// TestRoleOutsideThePatterns: the provider's patterns bind roles to
// namespaces; asking for another namespace's role gets no token, and a
// working binding switched to such a role keeps its Secret as it is.
func TestRoleOutsideThePatterns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) {
		s.AllowedRoleARNs = []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/${namespace}/*"}
	})
	foreign := "arn:aws:iam::123456789012:role/other-namespace/" + rand.String(6)
	f.binding("foreign-role", func(b *stsbindv1.IAMRoleBinding) {
		useProvider(p)(b)
		b.Spec.RoleARN = foreign
	})
	b := f.waitReady("foreign-role", metav1.ConditionFalse, stsbindv1.ReasonRoleNotAllowed)
	t.Log(meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady).Message)
	f.refusedUntouched(foreign)

	own := "arn:aws:iam::123456789012:role/" + f.ns + "/reader"
	f.binding("own-role", func(b *stsbindv1.IAMRoleBinding) {
		useProvider(p)(b)
		b.Spec.RoleARN = own
	})
	good := f.waitReady("own-role", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	before := f.secret("own-role")
	f.update(good, func(s *stsbindv1.IAMRoleBindingSpec) { s.RoleARN = foreign })
	// The refused change keeps the working generation serving.
	f.waitCondition("own-role", stsbindv1.ConditionUpToDate, metav1.ConditionFalse, stsbindv1.ReasonRoleNotAllowed)
	f.waitReady("own-role", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	if after := f.secret("own-role"); after.ResourceVersion != before.ResourceVersion {
		t.Error("the Secret changed after the provider refused the new role")
	}
	if n := fake.CallCount(foreign); n != 0 {
		t.Errorf("%d STS calls for the refused role", n)
	}
}

// TestAudienceTheAPIServerAccepts: a provider whose audience is the API
// server's own is refused; a token minted for it goes only to a TokenReview,
// never to STS, and the provider's status says why.
func TestAudienceTheAPIServerAccepts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	// The audience of a token requested without one is the API server's.
	tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	if err := k8s.SubResource("token").Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.sa}}, tr); err != nil {
		t.Fatal(err)
	}
	apiAudience := ststest.Audience(tr.Status.Token)
	if apiAudience == "" {
		t.Fatal("could not read the API server's audience")
	}
	p := f.provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.Audience = apiAudience })
	f.binding("kube-audience", useProvider(p))
	b := f.waitReady("kube-audience", metav1.ConditionFalse, stsbindv1.ReasonAudienceAcceptedByAPIServer)
	t.Log(meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady).Message)
	if n := fake.CallCount(f.role); n != 0 {
		t.Errorf("%d STS calls with a Kubernetes-audience token, want 0", n)
	}
	for _, c := range fake.Calls("") {
		if ststest.Audience(c.Token) == apiAudience {
			t.Fatalf("the fake STS received a token with the API server's audience %q", apiAudience)
		}
	}
	eventually(t, 60*time.Second, func() (bool, string) {
		var got stsbindv1.ClusterSTSProvider
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: p}, &got); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, stsbindv1.ConditionReady)
		if c == nil || c.Reason != stsbindv1.ReasonAudienceAcceptedByAPIServer {
			return false, fmt.Sprintf("provider condition %+v", c)
		}
		return true, ""
	})
	// A second binding of the provider is refused from the kept verdict,
	// before any token is minted for its ServiceAccount.
	g := newFixture(t)
	g.serviceAccount()
	g.binding("kube-audience", useProvider(p))
	g.waitReady("kube-audience", metav1.ConditionFalse, stsbindv1.ReasonAudienceAcceptedByAPIServer)
	g.refusedUntouched(g.role)
}

// TestMissingProviderAppearsLater: a binding naming a provider that does not
// exist waits, and proceeds as soon as the admin creates it.
func TestMissingProviderAppearsLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	name := "later-" + rand.String(6)
	f.binding("waits", useProvider(name))
	f.waitReady("waits", metav1.ConditionFalse, stsbindv1.ReasonProviderNotFound)
	f.refusedUntouched(f.role)
	p := &stsbindv1.ClusterSTSProvider{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: stsbindv1.ClusterSTSProviderSpec{
		Endpoint: fake.URL, Audience: testAudience, NamespaceSelector: &metav1.LabelSelector{}, AllowedRoleARNs: []stsbindv1.RoleARNPattern{testRoles},
	}}
	f.create(p)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	f.waitReady("waits", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	eventually(t, 15*time.Second, func() (bool, string) {
		var got stsbindv1.ClusterSTSProvider
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, &got); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, stsbindv1.ConditionReady)
		if got.Status.Bindings != 1 || c == nil || c.Status != metav1.ConditionTrue {
			return false, fmt.Sprintf("bindings %d, condition %+v", got.Status.Bindings, c)
		}
		return true, ""
	})
}

// TestOneNamespaceCannotStarveAnother: 2,000 bindings of one namespace due at
// once behind one provider, and one binding of another namespace due at the
// same moment: the latter is served before most of the former, because each
// namespace gets its own pace within the provider's rate.
func TestOneNamespaceCannotStarveAnother(t *testing.T) {
	t.Parallel()
	const crowd = 2000
	busy, quiet := newFixture(t), newFixture(t)
	busy.serviceAccount()
	quiet.serviceAccount()
	// 40 calls a second: the crowd alone needs 50 s (100 s at its namespace's half).
	p := busy.provider(func(s *stsbindv1.ClusterSTSProviderSpec) { s.RateLimit = stsbindv1.RateLimit{QPS: 40, Burst: 40} })

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, crowd)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < crowd; i += 16 {
				b := &stsbindv1.IAMRoleBinding{
					ObjectMeta: metav1.ObjectMeta{Namespace: busy.ns, Name: fmt.Sprintf("b-%04d", i)},
					Spec:       stsbindv1.IAMRoleBindingSpec{ServiceAccountName: busy.sa, RoleARN: busy.role, ProviderRef: &stsbindv1.ProviderReference{Name: p}},
				}
				if err := k8s.Create(ctx, b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.DeleteAllOf(context.Background(), &stsbindv1.IAMRoleBinding{}, client.InNamespace(busy.ns))
	})
	atCreate := fake.CallCount(busy.role)
	quiet.binding("lone", useProvider(p))
	quiet.waitReady("lone", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	// Counted up to the lone binding's STS call, not its Ready status: the
	// status write's latency on a loaded machine says nothing about fairness.
	lone := fake.Calls(quiet.role)
	if len(lone) == 0 {
		t.Fatal("the lone binding is Ready without an STS call")
	}
	before := 0
	for _, c := range fake.Calls(busy.role) {
		if c.Time.Before(lone[0].Time) {
			before++
		}
	}
	t.Logf("the crowd had %d of %d STS calls when the lone binding was created, %d when the lone one called STS", atCreate, crowd, before)
	// First come, first served would put the lone binding behind the whole
	// crowd; with the namespace pace it overtakes all but a few seconds' worth.
	if before-atCreate > crowd/10 {
		t.Errorf("%d of the crowd's calls went before the lone binding's; want at most %d", before-atCreate, crowd/10)
	}
}
