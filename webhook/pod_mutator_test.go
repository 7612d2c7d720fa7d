package webhook

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite webhook/testdata/*.out.yaml from the current mutation")

// fixtureOptions are the Options every fixture runs with.
var fixtureOptions = Options{
	DefaultRegion: "us-east-1",
	Sidecar: SidecarOptions{Image: "ghcr.io/stsbind/stsbind:test", Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
	}},
	NewToken: func() string { return "per-pod-token-for-tests" },
}

// readFixture reads <case>.in.yaml: a Pod, then the IAMRoleBindings of its
// namespace, as YAML documents.
func readFixture(t *testing.T, path string) (*corev1.Pod, []stsbindv1.IAMRoleBinding) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	var bindings []stsbindv1.IAMRoleBinding
	for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		switch meta.Kind {
		case "Pod":
			pod = &corev1.Pod{}
			if err := yaml.UnmarshalStrict(doc, pod); err != nil {
				t.Fatalf("%s document %d: %v", path, i, err)
			}
		case "IAMRoleBinding":
			var b stsbindv1.IAMRoleBinding
			if err := yaml.UnmarshalStrict(doc, &b); err != nil {
				t.Fatalf("%s document %d: %v", path, i, err)
			}
			bindings = append(bindings, b)
		default:
			t.Fatalf("%s document %d: unexpected kind %q", path, i, meta.Kind)
		}
	}
	if pod == nil {
		t.Fatalf("%s holds no Pod", path)
	}
	return pod, bindings
}

func TestMutatePodFixtures(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 15 {
		t.Fatalf("found %d fixtures in testdata, want at least 15", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pod, bindings := readFixture(t, in)
			mutatePod(pod, bindings, fixtureOptions)
			got, err := yaml.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join("testdata", name+".out.yaml")
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantRaw, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./webhook -run TestMutatePodFixtures -update to write it, then check it by eye)", err)
			}
			var want corev1.Pod
			if err := yaml.UnmarshalStrict(wantRaw, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, pod); diff != "" {
				t.Errorf("mutated pod differs from %s (-want +got):\n%s", out, diff)
			}

			// Reinvocation (reinvocationPolicy: IfNeeded) must add nothing.
			again := pod.DeepCopy()
			mutatePod(again, bindings, fixtureOptions)
			if diff := cmp.Diff(pod, again); diff != "" {
				t.Errorf("a second mutation changed the pod (-first +second):\n%s", diff)
			}
		})
	}
}

func TestVolumeName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 63)
	tests := map[string]struct {
		binding string
		want    string
	}{
		"short":            {binding: "s3-reader", want: "stsbind-s3-reader"},
		"exactly 63":       {binding: strings.Repeat("b", 55), want: "stsbind-" + strings.Repeat("b", 55)},
		"64 gets a hash":   {binding: strings.Repeat("b", 56), want: "stsbind-" + strings.Repeat("b", 46) + "-" + hashOf(strings.Repeat("b", 56))},
		"63-char binding":  {binding: long, want: "stsbind-" + strings.Repeat("a", 46) + "-" + hashOf(long)},
		"dots are invalid": {binding: "s3.reader", want: "stsbind-s3-reader-" + hashOf("s3.reader")},
		"no trailing dash": {binding: strings.Repeat("c", 45) + "-" + strings.Repeat("d", 17), want: "stsbind-" + strings.Repeat("c", 45) + "-" + hashOf(strings.Repeat("c", 45)+"-"+strings.Repeat("d", 17))},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := VolumeName(tc.binding)
			if got != tc.want {
				t.Errorf("VolumeName(%q) = %q, want %q", tc.binding, got, tc.want)
			}
			if len(got) > 63 {
				t.Errorf("VolumeName(%q) has %d characters, want at most 63", tc.binding, len(got))
			}
		})
	}
}

func hashOf(s string) string {
	h := hashedVolumeName(s)
	return h[len(h)-8:]
}

func TestOptedOut(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		annotations map[string]string
		want        bool
	}{
		"no annotations": {want: false},
		"false":          {annotations: map[string]string{stsbindv1.AnnotationInject: "false"}, want: true},
		"False":          {annotations: map[string]string{stsbindv1.AnnotationInject: "False"}, want: true},
		"true":           {annotations: map[string]string{stsbindv1.AnnotationInject: "true"}, want: false},
		"garbage":        {annotations: map[string]string{stsbindv1.AnnotationInject: "nope"}, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}}
			if got := optedOut(pod); got != tc.want {
				t.Errorf("optedOut(%v) = %v, want %v", tc.annotations, got, tc.want)
			}
		})
	}
}

func benchPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-7d9f", Namespace: "team-a", Labels: map[string]string{"app": "app"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "registry.example/app:1.0",
				Env:   []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}},
				VolumeMounts: []corev1.VolumeMount{{
					Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true,
				}},
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access"}},
		},
	}
}

func benchBindings(n int) []stsbindv1.IAMRoleBinding {
	bs := make([]stsbindv1.IAMRoleBinding, n)
	for i := range bs {
		bs[i] = stsbindv1.IAMRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("role-%d", n-i), Namespace: "team-a"},
			Spec: stsbindv1.IAMRoleBindingSpec{
				ServiceAccountName: "app",
				RoleARN:            "arn:aws:iam::123456789012:role/r",
				Region:             "eu-west-1",
				Injection:          stsbindv1.Injection{Mode: stsbindv1.InjectionFiles},
			},
		}
	}
	return bs
}

// BenchmarkMutatePod measures the mutation alone; the pods are copied outside
// the timer, in batches, so ns/op and allocs/op are the mutation's own.
func BenchmarkMutatePod(b *testing.B) {
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			bindings := benchBindings(n)
			base := benchPod()
			const batch = 1024
			pods := make([]*corev1.Pod, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == 0 {
					b.StopTimer()
					for j := range pods {
						pods[j] = base.DeepCopy()
					}
					b.StartTimer()
				}
				mutatePod(pods[i%batch], bindings, fixtureOptions)
			}
		})
	}
}
