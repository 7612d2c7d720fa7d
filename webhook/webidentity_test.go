package webhook

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// fixtureDefaultProvider is the --default-provider of the WebIdentity fixtures.
const fixtureDefaultProvider = "aws"

// webIdentityFixture is testdata/webidentity/<case>.in.yaml: a Pod, the
// IAMRoleBindings of its namespace, the ClusterSTSProviders and, when the
// case needs labels, the pod's Namespace.
type webIdentityFixture struct {
	pod       *corev1.Pod
	bindings  []stsbindv1.IAMRoleBinding
	providers map[string]*stsbindv1.ClusterSTSProvider
	nsLabels  map[string]string
}

func readWebIdentityFixture(t *testing.T, path string) webIdentityFixture {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := webIdentityFixture{providers: map[string]*stsbindv1.ClusterSTSProvider{}}
	var ns *corev1.Namespace
	for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		var into any
		switch tm.Kind {
		case "Pod":
			f.pod = &corev1.Pod{}
			into = f.pod
		case "IAMRoleBinding":
			f.bindings = append(f.bindings, stsbindv1.IAMRoleBinding{})
			into = &f.bindings[len(f.bindings)-1]
		case "ClusterSTSProvider":
			into = &stsbindv1.ClusterSTSProvider{}
		case "Namespace":
			ns = &corev1.Namespace{}
			into = ns
		default:
			t.Fatalf("%s document %d: unexpected kind %q", path, i, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		if p, ok := into.(*stsbindv1.ClusterSTSProvider); ok {
			f.providers[p.Name] = p
		}
	}
	if f.pod == nil {
		t.Fatalf("%s holds no Pod", path)
	}
	// The API server labels every namespace with its name.
	f.nsLabels = map[string]string{"kubernetes.io/metadata.name": f.pod.Namespace}
	if ns != nil {
		for k, v := range ns.Labels {
			f.nsLabels[k] = v
		}
	}
	return f
}

// admitWebIdentity does what PodDefaulter.webIdentityTargets does, from
// the fixture instead of the cache: the permitted bindings and their tokens.
func (f webIdentityFixture) admitWebIdentity(t *testing.T) ([]stsbindv1.IAMRoleBinding, map[string]WebIdentityTarget) {
	var kept []stsbindv1.IAMRoleBinding
	targets := map[string]WebIdentityTarget{}
	for _, b := range f.bindings {
		if b.InjectionModeOrDefault() == stsbindv1.InjectionWebIdentity {
			name := b.ProviderNameOrDefault(fixtureDefaultProvider)
			target, no := decideWebIdentity(&b, name, f.providers[name], f.nsLabels, fixtureOptions.DefaultRegion)
			if no != nil {
				t.Logf("binding %s refused: %s: %s", b.Name, no.Reason, no.Message)
				continue
			}
			targets[b.Name] = target
		}
		kept = append(kept, b)
	}
	return kept, targets
}

// TestWebIdentityFixtures: whole Pods in and out, with the provider's rules
// applied as at admission; a second run (reinvocation) adds nothing.
func TestWebIdentityFixtures(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "webidentity", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 10 {
		t.Fatalf("found %d fixtures in testdata/webidentity, want at least 10", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := readWebIdentityFixture(t, in)
			bindings, targets := f.admitWebIdentity(t)
			opts := fixtureOptions
			opts.WebIdentity = targets
			pod := f.pod.DeepCopy()
			mutatePod(pod, bindings, opts)
			got, err := yaml.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join("testdata", "webidentity", name+".out.yaml")
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantRaw, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./webhook -run TestWebIdentityFixtures -update to write it, then check it by eye)", err)
			}
			var want corev1.Pod
			if err := yaml.UnmarshalStrict(wantRaw, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, pod); diff != "" {
				t.Errorf("mutated pod differs from %s (-want +got):\n%s", out, diff)
			}
			again := pod.DeepCopy()
			mutatePod(again, bindings, opts)
			if diff := cmp.Diff(pod, again); diff != "" {
				t.Errorf("a second mutation changed the pod (-first +second):\n%s", diff)
			}
		})
	}
}

// TestWebIdentityNeedsATarget: the pure mutation projects no token for a
// WebIdentity binding that was not admitted, whatever the binding says.
func TestWebIdentityNeedsATarget(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team-a"},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	b := stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a"},
		Spec: stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", RoleARN: "arn:aws:iam::123456789012:role/x",
			Injection: stsbindv1.Injection{Mode: stsbindv1.InjectionWebIdentity}},
	}
	for name, targets := range map[string]map[string]WebIdentityTarget{
		"no targets":             nil,
		"another binding's":      {"other": {Audience: "sts.amazonaws.com", ExpirationSeconds: 3600}},
		"a target sans audience": {"web": {ExpirationSeconds: 3600}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := pod.DeepCopy()
			opts := fixtureOptions
			opts.WebIdentity = targets
			mutatePod(got, []stsbindv1.IAMRoleBinding{b}, opts)
			if len(got.Spec.Volumes) != 0 || len(got.Spec.Containers[0].Env) != 0 || len(got.Spec.Containers[0].VolumeMounts) != 0 {
				t.Errorf("pod got a token or variables without an admitted target:\n%+v", got.Spec)
			}
		})
	}
}

func TestRegionalSTSEndpoint(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ region, want string }{
		"aws":     {"eu-west-1", "https://sts.eu-west-1.amazonaws.com"},
		"china":   {"cn-north-1", "https://sts.cn-north-1.amazonaws.com.cn"},
		"gov":     {"us-gov-west-1", "https://sts.us-gov-west-1.amazonaws.com"},
		"nothing": {"", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := regionalSTSEndpoint(tc.region); got != tc.want {
				t.Errorf("regionalSTSEndpoint(%q) = %q, want %q", tc.region, got, tc.want)
			}
		})
	}
}
