package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func testBinding(mode stsbindv1.InjectionMode, edits ...func(*stsbindv1.IAMRoleBinding)) *stsbindv1.IAMRoleBinding {
	b := &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "s3-reader", Generation: 3},
		Spec:       stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", Injection: stsbindv1.Injection{Mode: mode}},
	}
	for _, e := range edits {
		e(b)
	}
	return b
}

// testPod is a pending pod of ServiceAccount app with one container.
func testPod(name string, edits ...func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, e := range edits {
		e(&p)
	}
	return p
}

func secretVolume(secret string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}})
	}
}

func TestReportPods(t *testing.T) {
	t.Parallel()
	running := func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }
	tests := map[string]struct {
		binding     *stsbindv1.IAMRoleBinding
		pods        []corev1.Pod
		wantApplies bool
		wantChecked int
		wantMissed  []string
	}{
		"injected (Files volume) and missed, sorted": {
			binding:     testBinding(stsbindv1.InjectionFiles),
			pods:        []corev1.Pod{testPod("web-2"), testPod("web-1", secretVolume("s3-reader"), running), testPod("web-0", running)},
			wantApplies: true, wantChecked: 3, wantMissed: []string{"web-0", "web-2"},
		},
		"started before the binding existed: missed": {
			binding:     testBinding(""),
			pods:        []corev1.Pod{testPod("old", running)},
			wantApplies: true, wantChecked: 1, wantMissed: []string{"old"},
		},
		"mode None: nothing applies": {
			binding: testBinding(stsbindv1.InjectionNone),
			pods:    []corev1.Pod{testPod("web-0", running)},
		},
		"mode WebIdentity: not reported (no Secret to look for)": {
			binding: testBinding(stsbindv1.InjectionWebIdentity),
			pods:    []corev1.Pod{testPod("web-0", running)},
		},
		"opted out": {
			binding:     testBinding(stsbindv1.InjectionFiles),
			pods:        []corev1.Pod{testPod("web-0", func(p *corev1.Pod) { p.Annotations = map[string]string{stsbindv1.AnnotationInject: "false"} })},
			wantApplies: true,
		},
		"inject annotation true still counts": {
			binding:     testBinding(stsbindv1.InjectionFiles),
			pods:        []corev1.Pod{testPod("web-0", func(p *corev1.Pod) { p.Annotations = map[string]string{stsbindv1.AnnotationInject: "true"} })},
			wantApplies: true, wantChecked: 1, wantMissed: []string{"web-0"},
		},
		"finished and deleting pods do not count": {
			binding: testBinding(stsbindv1.InjectionFiles),
			pods: []corev1.Pod{
				testPod("done", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
				testPod("failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
				testPod("going", func(p *corev1.Pod) { p.DeletionTimestamp = ptr.To(metav1.Now()) }),
			},
			wantApplies: true,
		},
		"other ServiceAccount; empty one is default": {
			binding: testBinding(stsbindv1.InjectionFiles, func(b *stsbindv1.IAMRoleBinding) { b.Spec.ServiceAccountName = "default" }),
			pods: []corev1.Pod{
				testPod("app-pod"),
				testPod("default-pod", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "" }),
			},
			wantApplies: true, wantChecked: 1, wantMissed: []string{"default-pod"},
		},
		"mirror pod": {
			binding:     testBinding(stsbindv1.InjectionFiles),
			pods:        []corev1.Pod{testPod("static", func(p *corev1.Pod) { p.Annotations = map[string]string{annotationMirror: "abc"} })},
			wantApplies: true,
		},
		"allow-list selects no container": {
			binding:     testBinding(stsbindv1.InjectionFiles, func(b *stsbindv1.IAMRoleBinding) { b.Spec.Injection.Containers = []string{"worker"} }),
			pods:        []corev1.Pod{testPod("web-0")},
			wantApplies: true,
		},
		"allow-list selects an init container": {
			binding: testBinding(stsbindv1.InjectionFiles, func(b *stsbindv1.IAMRoleBinding) { b.Spec.Injection.Containers = []string{"setup"} }),
			pods: []corev1.Pod{testPod("web-0", func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "setup"}}
			})},
			wantApplies: true, wantChecked: 1, wantMissed: []string{"web-0"},
		},
		"spec.secretName: only that Secret counts": {
			binding:     testBinding(stsbindv1.InjectionFiles, func(b *stsbindv1.IAMRoleBinding) { b.Spec.SecretName = "s3-reader-v2" }),
			pods:        []corev1.Pod{testPod("web-0", secretVolume("s3-reader")), testPod("web-1", secretVolume("s3-reader-v2"))},
			wantApplies: true, wantChecked: 2, wantMissed: []string{"web-0"},
		},
		"Env variables, envFrom and projected volumes count": {
			binding: testBinding(stsbindv1.InjectionEnv),
			pods: []corev1.Pod{
				testPod("env", func(p *corev1.Pod) {
					p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "AWS_ACCESS_KEY_ID", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "s3-reader"}, Key: "AWS_ACCESS_KEY_ID"}}}}
				}),
				testPod("envfrom", func(p *corev1.Pod) {
					p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s3-reader"}}}}
				}),
				testPod("projected", func(p *corev1.Pod) {
					p.Spec.Volumes = []corev1.Volume{{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
						{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "s3-reader"}}},
					}}}}}
				}),
				testPod("other-secret", secretVolume("db-password")),
			},
			wantApplies: true, wantChecked: 4, wantMissed: []string{"other-secret"},
		},
		"Env: a container with its own keys is left alone by the webhook": {
			binding: testBinding(stsbindv1.InjectionEnv),
			pods: []corev1.Pod{testPod("own-keys", func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "AWS_SECRET_ACCESS_KEY", Value: "literal"}}
			})},
			wantApplies: true, wantChecked: 1,
		},
		"Files: own keys in env do not stop the mount": {
			binding: testBinding(stsbindv1.InjectionFiles),
			pods: []corev1.Pod{testPod("own-keys", func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "AWS_SECRET_ACCESS_KEY", Value: "literal"}}
			})},
			wantApplies: true, wantChecked: 1, wantMissed: []string{"own-keys"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := reportPods(tc.binding, tc.pods)
			want := podReport{applies: tc.wantApplies, checked: tc.wantChecked, missed: tc.wantMissed}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(podReport{})); diff != "" {
				t.Errorf("reportPods (-want +got):\n%s", diff)
			}
			// The cache holds stripped pods: the answer must not change.
			stripped := make([]corev1.Pod, len(tc.pods))
			for i := range tc.pods {
				stripped[i] = *stripPod(&tc.pods[i])
			}
			if diff := cmp.Diff(got, reportPods(tc.binding, stripped), cmp.AllowUnexported(podReport{})); diff != "" {
				t.Errorf("reportPods on stripped pods differs (-full +stripped):\n%s", diff)
			}
		})
	}
}

// readWebhookFixture reads a webhook/testdata case: the pod and bindings
// before the mutation, and the pod after it.
func readWebhookFixture(t *testing.T, in string) (before corev1.Pod, bindings []stsbindv1.IAMRoleBinding, after corev1.Pod) {
	t.Helper()
	raw, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.Kind {
		case "Pod":
			err = yaml.Unmarshal(doc, &before)
		case "IAMRoleBinding":
			var b stsbindv1.IAMRoleBinding
			err = yaml.Unmarshal(doc, &b)
			bindings = append(bindings, b)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	raw, err = os.ReadFile(strings.Replace(in, ".in.yaml", ".out.yaml", 1))
	if err == nil {
		err = yaml.Unmarshal(raw, &after)
	}
	if err != nil {
		t.Fatal(err)
	}
	return before, bindings, after
}

// secretsNamed lists the Secrets a pod's JSON names anywhere (volumes,
// projections, env, envFrom): written apart from hasSecret, by walking the
// document.
func secretsNamed(t *testing.T, p *corev1.Pod) map[string]bool {
	raw, err := json.Marshal(p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["secretName"].(string); ok {
				out[s] = true
			}
			if n, ok := v["name"].(string); ok && (key == "secretKeyRef" || key == "secretRef" || key == "secret") {
				out[n] = true
			}
			for k, c := range v {
				walk(k, c)
			}
		case []any:
			for _, c := range v {
				walk(key, c)
			}
		}
	}
	walk("", doc)
	return out
}

// TestMissedMeansTheWebhookWouldInject runs the report over the webhook's own
// fixtures: the pod before the mutation is missed by a binding exactly when
// the mutation gave it that binding's Secret, and the pod after it never is.
// A change to how the webhook injects that the report does not recognise
// fails here.
func TestMissedMeansTheWebhookWouldInject(t *testing.T) {
	t.Parallel()
	inputs, err := filepath.Glob(filepath.Join("..", "webhook", "testdata", "*.in.yaml"))
	if err != nil || len(inputs) < 15 {
		t.Fatalf("webhook fixtures: %d, %v", len(inputs), err)
	}
	missedSome, injectedSome := 0, 0
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			before, bindings, after := readWebhookFixture(t, in)
			had, got := secretsNamed(t, &before), secretsNamed(t, &after)
			for i := range bindings {
				b := &bindings[i]
				if b.Namespace != "" && b.Namespace != before.Namespace {
					continue
				}
				secret := b.SecretNameOrDefault()
				wantMissed := got[secret] && !had[secret]
				for _, p := range []*corev1.Pod{&before, stripPod(&before)} {
					if rep := reportPods(b, []corev1.Pod{*p}); (len(rep.missed) == 1) != wantMissed {
						t.Errorf("binding %s, pod before the mutation: missed %v, want %v (the mutation added Secret %s: %v)", b.Name, rep.missed, wantMissed, secret, wantMissed)
					}
				}
				for _, p := range []*corev1.Pod{&after, stripPod(&after)} {
					if rep := reportPods(b, []corev1.Pod{*p}); len(rep.missed) != 0 {
						t.Errorf("binding %s, pod after the mutation: missed %v", b.Name, rep.missed)
					}
				}
				if wantMissed {
					missedSome++
				} else if got[secret] {
					injectedSome++
				}
			}
		})
	}
	if missedSome < 10 || injectedSome < 1 {
		t.Errorf("the fixtures exercised %d missed and %d already injected pods: too few to prove anything", missedSome, injectedSome)
	}
}

func TestStripPodKeepsNoValues(t *testing.T) {
	t.Parallel()
	p := testPod("web-0", secretVolume("s3-reader"), func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "web"}
		p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 2000), stsbindv1.AnnotationInject: "false"}
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
		c := &p.Spec.Containers[0]
		c.Env = []corev1.EnvVar{
			{Name: "AWS_SECRET_ACCESS_KEY", Value: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
			{Name: "LOG_LEVEL", Value: "debug"},
			{Name: "DB", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "url"}}},
		}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "creds", MountPath: "/var/run/secrets/stsbind.dev/s3-reader", ReadOnly: true}, {Name: "data", MountPath: "/data"}}
		c.Command = []string{"/app", "--token=abc"}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	})
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web-0", Annotations: map[string]string{
			stsbindv1.AnnotationInject: "false",
			cachedContainers:           "app",
			cachedSecrets:              "db,s3-reader",
			cachedOwnKeys:              "app",
			cachedMounts:               "app/s3-reader",
		}},
		Spec:   corev1.PodSpec{ServiceAccountName: "app"},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	got := stripPod(&p)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stripPod (-want +got):\n%s", diff)
	}
	if again := stripPod(got); again != got {
		t.Error("stripping a stripped pod made a new one")
	}
	if diff := cmp.Diff(factsOf(&p), factsOf(got), cmp.AllowUnexported(podFacts{})); diff != "" {
		t.Errorf("facts of the stripped pod differ (-whole +stripped):\n%s", diff)
	}
}

func TestSetPodsStatus(t *testing.T) {
	t.Parallel()
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("web-%02d", i)
	}
	tests := map[string]struct {
		rep         podReport
		wantCount   *int32
		wantStatus  metav1.ConditionStatus // "" for no condition
		wantReason  string
		wantMessage string
		fresh       bool // no count or condition from before
	}{
		"all injected": {
			rep:       podReport{applies: true, checked: 4},
			wantCount: ptr.To[int32](0), wantStatus: metav1.ConditionTrue, wantReason: stsbindv1.ReasonAllPodsInjected,
			wantMessage: "All 4 running pods of ServiceAccount app have this binding's credentials",
		},
		"one missed": {
			rep:       podReport{applies: true, checked: 4, missed: []string{"web-1"}},
			wantCount: ptr.To[int32](1), wantStatus: metav1.ConditionFalse, wantReason: stsbindv1.ReasonPodsWithoutCredentials,
			wantMessage: "1 of 4 running pods of ServiceAccount app runs without this binding's credentials: web-1. They started while the stsbind webhook was unreachable, or before this binding existed; restart them (delete the pods, or kubectl rollout restart their workload) so that the webhook injects them",
		},
		"twelve missed: ten named": {
			rep:       podReport{applies: true, checked: 12, missed: many},
			wantCount: ptr.To[int32](12), wantStatus: metav1.ConditionFalse, wantReason: stsbindv1.ReasonPodsWithoutCredentials,
			wantMessage: "12 of 12 running pods of ServiceAccount app run without this binding's credentials: web-00, web-01, web-02, web-03, web-04, web-05, web-06, web-07, web-08, web-09 and 2 more. They started while the stsbind webhook was unreachable, or before this binding existed; restart them (delete the pods, or kubectl rollout restart their workload) so that the webhook injects them",
		},
		"mode None: count and condition removed": {rep: podReport{}},
		"pods gone since the last report": {
			rep:       podReport{applies: true},
			wantCount: ptr.To[int32](0), wantStatus: metav1.ConditionTrue, wantReason: stsbindv1.ReasonAllPodsInjected,
			wantMessage: "No running pods of ServiceAccount app",
		},
		"no pods, nothing reported yet: nothing to write": {rep: podReport{applies: true}, fresh: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := testBinding(stsbindv1.InjectionFiles)
			// A count and condition from before, and the credential
			// controller's Ready, which stays.
			b.Status.PodsWithoutCredentials = ptr.To[int32](7)
			b.Status.Conditions = []metav1.Condition{
				{Type: stsbindv1.ConditionReady, Status: metav1.ConditionTrue, Reason: stsbindv1.ReasonCredentialsIssued},
				{Type: stsbindv1.ConditionPodsInjected, Status: metav1.ConditionFalse, Reason: stsbindv1.ReasonPodsWithoutCredentials},
			}
			if tc.fresh {
				b.Status.PodsWithoutCredentials = nil
				b.Status.Conditions = b.Status.Conditions[:1]
			}
			setPodsStatus(b, tc.rep)
			if diff := cmp.Diff(tc.wantCount, b.Status.PodsWithoutCredentials); diff != "" {
				t.Errorf("count (-want +got):\n%s", diff)
			}
			if meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady) == nil {
				t.Error("the Ready condition was lost")
			}
			c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionPodsInjected)
			if tc.wantStatus == "" {
				if c != nil {
					t.Errorf("condition %+v, want none", c)
				}
				return
			}
			if c == nil || c.Status != tc.wantStatus || c.Reason != tc.wantReason || c.ObservedGeneration != 3 {
				t.Fatalf("condition %+v, want %s/%s at generation 3", c, tc.wantStatus, tc.wantReason)
			}
			if diff := cmp.Diff(tc.wantMessage, c.Message); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodsEvent(t *testing.T) {
	t.Parallel()
	missed := func(names ...string) podReport { return podReport{applies: true, checked: 5, missed: names} }
	tests := map[string]struct {
		rep                    podReport
		last                   any
		known                  bool
		statusCount            *int32
		wantWarn, wantRemember bool
	}{
		"first missed pod":              {rep: missed("a"), last: "", known: true, wantWarn: true, wantRemember: true},
		"same set: no second event":     {rep: missed("a", "b"), last: "a,b", known: true},
		"another pod missed":            {rep: missed("a", "b"), last: "a", known: true, wantWarn: true, wantRemember: true},
		"one replaced by another":       {rep: missed("b"), last: "a", known: true, wantWarn: true, wantRemember: true},
		"all restarted: remember quiet": {rep: missed(), last: "a", known: true, wantRemember: true},
		"after a restart, status agrees": {
			rep: missed("a", "b"), statusCount: ptr.To[int32](2), wantRemember: true,
		},
		"after a restart, status differs": {
			rep: missed("a", "b"), statusCount: ptr.To[int32](1), wantWarn: true, wantRemember: true,
		},
		"new binding with missed pods": {rep: missed("a"), wantWarn: true, wantRemember: true},
		"new binding, none missed":     {rep: missed(), wantRemember: true},
		"mode None":                    {rep: podReport{}, last: "a", known: true, wantRemember: true},
		"mode None, nothing to forget": {rep: podReport{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			warn, remember := podsEvent(tc.rep, tc.last, tc.known, tc.statusCount)
			if warn != tc.wantWarn || remember != tc.wantRemember {
				t.Errorf("podsEvent = warn %v, remember %v; want %v, %v", warn, remember, tc.wantWarn, tc.wantRemember)
			}
		})
	}
}

func TestBindingSeries(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	type sample struct {
		Name   string
		Value  float64
		Labels []string
	}
	tests := map[string]struct {
		status stsbindv1.IAMRoleBindingStatus
		want   []sample
	}{
		"ready with credentials and pods": {
			status: stsbindv1.IAMRoleBindingStatus{
				Expiration:             ptr.To(metav1.NewTime(exp)),
				NextRefreshTime:        ptr.To(metav1.NewTime(exp.Add(-20 * time.Minute))),
				Conditions:             []metav1.Condition{{Type: stsbindv1.ConditionReady, Status: metav1.ConditionTrue}},
				PodsWithoutCredentials: ptr.To[int32](3),
			},
			want: []sample{
				{MetricExpiration, float64(exp.Unix()), []string{"team-a", "s3-reader"}},
				{MetricRenewal, float64(exp.Unix() - 1200), []string{"team-a", "s3-reader"}},
				{MetricReady, 1, []string{"team-a", "s3-reader", "True"}},
				{MetricReady, 0, []string{"team-a", "s3-reader", "False"}},
				{MetricReady, 0, []string{"team-a", "s3-reader", "Unknown"}},
				{MetricPodsWithoutCredentials, 3, []string{"team-a", "s3-reader"}},
			},
		},
		"failed, previous credentials kept": {
			status: stsbindv1.IAMRoleBindingStatus{
				Expiration: ptr.To(metav1.NewTime(exp)),
				Conditions: []metav1.Condition{{Type: stsbindv1.ConditionReady, Status: metav1.ConditionFalse}},
			},
			want: []sample{
				{MetricExpiration, float64(exp.Unix()), []string{"team-a", "s3-reader"}},
				{MetricReady, 0, []string{"team-a", "s3-reader", "True"}},
				{MetricReady, 1, []string{"team-a", "s3-reader", "False"}},
				{MetricReady, 0, []string{"team-a", "s3-reader", "Unknown"}},
			},
		},
		"new: no status yet": {
			want: []sample{
				{MetricReady, 0, []string{"team-a", "s3-reader", "True"}},
				{MetricReady, 0, []string{"team-a", "s3-reader", "False"}},
				{MetricReady, 1, []string{"team-a", "s3-reader", "Unknown"}},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := testBinding(stsbindv1.InjectionFiles)
			b.Status = tc.status
			var got []sample
			for _, s := range bindingSeries(b) {
				// The descriptor's string starts with its fully-qualified name.
				name := strings.SplitN(strings.TrimPrefix(s.desc.String(), `Desc{fqName: "`), `"`, 2)[0]
				got = append(got, sample{name, s.value, s.labels})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("bindingSeries (-want +got):\n%s", diff)
			}
		})
	}
}
