package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
)

// pod is a pod of the fixture's ServiceAccount, created straight in the API
// server: this suite runs no webhook, so it is a pod that missed injection
// unless edit gives it the binding's Secret the way the webhook does.
func (f *fixture) pod(name string, edit func(*corev1.Pod)) *corev1.Pod {
	f.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec:       corev1.PodSpec{ServiceAccountName: f.sa, Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
	if edit != nil {
		edit(p)
	}
	f.create(p)
	return p
}

// injected gives the pod the binding's Secret as Files mode does.
func injected(secret string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "stsbind-" + secret, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "stsbind-" + secret, MountPath: "/var/run/secrets/stsbind.dev/" + secret, ReadOnly: true}}
	}
}

// waitMissed waits until the binding reports want missed pods out of
// checked, with condition PodsInjected saying so, and returns the binding.
func (f *fixture) waitMissed(name string, want, checked int) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	var b stsbindv1.IAMRoleBinding
	eventually(f.t, 30*time.Second, func() (bool, string) {
		if err := f.get(&b, name); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionPodsInjected)
		if b.Status.PodsWithoutCredentials == nil || c == nil {
			return false, fmt.Sprintf("no count (%v) or condition yet", b.Status.PodsWithoutCredentials)
		}
		wantStatus, wantText := metav1.ConditionFalse, fmt.Sprintf("%d of %d running pods", want, checked)
		if want == 0 {
			wantStatus, wantText = metav1.ConditionTrue, fmt.Sprintf("All %d running pods", checked)
		}
		if int(*b.Status.PodsWithoutCredentials) != want || c.Status != wantStatus || !strings.Contains(c.Message, wantText) {
			return false, fmt.Sprintf("count %d, %s: %s; want %d, %s, %q", *b.Status.PodsWithoutCredentials, c.Status, c.Message, want, wantStatus, wantText)
		}
		return true, ""
	})
	return &b
}

// podsMetric is the binding's stsbind_binding_pods_without_credentials in a
// scrape of the registry; -1 when absent.
func podsMetric(t *testing.T, ns, name string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != controllers.MetricPodsWithoutCredentials {
			continue
		}
		for _, m := range mf.Metric {
			if labelsAre(m, map[string]string{"namespace": ns, "name": name}) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func labelsAre(m *dto.Metric, want map[string]string) bool {
	if len(m.Label) != len(want) {
		return false
	}
	for _, l := range m.Label {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

// TestMissedPods: pods created in the API server without the webhook are
// reported on their binding (count, condition naming them, Warning event
// naming them, metric), including a pod that existed before the binding;
// injected, opted-out, other ServiceAccounts' and finished pods are not; a
// restart (delete) of the missed pods clears the report.
func TestMissedPods(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	ctx := context.Background()

	early := f.pod("early", nil) // before the binding existed
	f.binding("s3", nil)
	f.waitReady("s3", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	b := f.waitMissed("s3", 1, 1)
	if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionPodsInjected); c.Reason != stsbindv1.ReasonPodsWithoutCredentials || !strings.Contains(c.Message, ": early.") {
		t.Errorf("condition %s: %s; want reason %s naming pod early", c.Reason, c.Message, stsbindv1.ReasonPodsWithoutCredentials)
	}
	ev := f.waitEvent("s3", corev1.EventTypeWarning, stsbindv1.ReasonPodsWithoutCredentials)
	if !strings.Contains(ev.Note, "early") || !strings.Contains(ev.Note, "restart them") {
		t.Errorf("event note %q does not name pod early and say what to do", ev.Note)
	}

	f.pod("injected", injected("s3"))
	f.pod("opted-out", func(p *corev1.Pod) { p.Annotations = map[string]string{stsbindv1.AnnotationInject: "false"} })
	f.pod("other-sa", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "batch" })
	late := f.pod("late", nil) // admitted while the webhook was down
	f.waitMissed("s3", 2, 3)
	eventually(t, 15*time.Second, func() (bool, string) {
		for _, e := range f.events("s3") {
			if e.Reason == stsbindv1.ReasonPodsWithoutCredentials && strings.Contains(e.Note, "early, late") {
				return true, ""
			}
		}
		return false, "no Warning event naming early and late"
	})
	eventually(t, 10*time.Second, func() (bool, string) {
		v := podsMetric(t, f.ns, "s3")
		return v == 2, fmt.Sprintf("%s = %v", controllers.MetricPodsWithoutCredentials, v)
	})

	// A pod that finished leaves the report (and the cache).
	finished := f.pod("finished", nil)
	f.waitMissed("s3", 3, 4)
	finished.Status.Phase = corev1.PodSucceeded
	if err := k8s.Status().Update(ctx, finished); err != nil {
		t.Fatal(err)
	}
	f.waitMissed("s3", 2, 3)

	// Restarting the missed pods (here: deleting them; unscheduled pods go
	// at once) clears the report.
	for _, p := range []*corev1.Pod{early, late} {
		if err := k8s.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	f.waitMissed("s3", 0, 1)
	eventually(t, 10*time.Second, func() (bool, string) {
		v := podsMetric(t, f.ns, "s3")
		return v == 0, fmt.Sprintf("%s = %v", controllers.MetricPodsWithoutCredentials, v)
	})
}

// TestMissedPodsModeNone: a binding that injects nothing reports nothing,
// and switching a binding to None removes its report.
func TestMissedPodsModeNone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	f.pod("bare", nil)
	b := f.binding("env", func(b *stsbindv1.IAMRoleBinding) { b.Spec.Injection.Mode = stsbindv1.InjectionEnv })
	f.waitMissed("env", 1, 1)
	if err := f.get(b, "env"); err != nil {
		t.Fatal(err)
	}
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Mode = stsbindv1.InjectionNone })
	eventually(t, 30*time.Second, func() (bool, string) {
		if err := f.get(b, "env"); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionPodsInjected)
		return b.Status.PodsWithoutCredentials == nil && c == nil && podsMetric(t, f.ns, "env") == -1,
			fmt.Sprintf("count %v, condition %v", b.Status.PodsWithoutCredentials, c)
	})
	if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady); c == nil {
		t.Error("the Ready condition went with PodsInjected")
	}
}
