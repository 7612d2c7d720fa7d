package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// outageLabel marks a namespace whose pods go to a webhook of their own,
// which TestPodsMissedDuringWebhookOutage points wherever it likes; the
// package's webhook leaves such namespaces alone.
const outageLabel = "test.stsbind.dev/webhook-outage"

// TestPodsMissedDuringWebhookOutage: while the webhook is unreachable (the
// API server's call is refused) and its failurePolicy is Ignore, a pod of a
// bound ServiceAccount starts on the real node without credentials; the
// controller reports it on the binding (count, condition and Warning event
// naming it). Once the webhook is back, restarting the pod clears the report.
func TestPodsMissedDuringWebhookOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := suite.Namespace(t, "outage", map[string]string{outageLabel: "true"})

	// Nothing listens on this port of the bridge: connection refused.
	l, err := net.Listen("tcp", net.JoinHostPort(suite.Node.Network.Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	deadURL := fmt.Sprintf("https://%s/mutate--v1-pod", l.Addr())
	l.Close()
	hook := outageWebhook(t, ns, deadURL)
	if err := suite.Client.Create(ctx, hook); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.Client.Delete(context.Background(), hook) })

	b := suite.Binding(t, ns, "s3", stsbindv1.InjectionFiles, operatorLog)
	pod := sleeperPod(ns, "during-outage")
	if err := suite.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, pod)
	if hasVolume(pod, "stsbind-s3") {
		t.Fatalf("the pod was injected although the webhook was unreachable:\n%s", operatorLog())
	}
	start := time.Now()
	waitReported(t, b, 1, "during-outage")
	t.Logf("pod admitted unmutated during the outage; on the binding %s after it was Running", time.Since(start).Round(time.Millisecond))
	var note string
	for deadline := time.Now().Add(30 * time.Second); note == ""; time.Sleep(200 * time.Millisecond) {
		var events eventsv1.EventList
		if err := suite.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.Regarding.Name == b.Name && e.Reason == stsbindv1.ReasonPodsWithoutCredentials && strings.Contains(e.Note, "during-outage") {
				note = e.Note
			}
		}
		if note == "" && time.Now().After(deadline) {
			t.Fatalf("no Warning event %s naming the pod", stsbindv1.ReasonPodsWithoutCredentials)
		}
	}
	t.Logf("event: %s", note)

	// The webhook is back; the restarted pod gets its credentials.
	if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(hook), hook); err != nil {
		t.Fatal(err)
	}
	hook.Webhooks[0].ClientConfig.URL = ptr.To(operator.webhookURL)
	if err := suite.Client.Update(ctx, hook); err != nil {
		t.Fatal(err)
	}
	if err := suite.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	again := sleeperPod(ns, "after-outage")
	if err := suite.Client.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	if !hasVolume(again, "stsbind-s3") {
		t.Fatalf("the pod created after the outage was not injected:\n%s", operatorLog())
	}
	waitPodRunning(t, again)
	waitReported(t, b, 0, "")
}

// outageWebhook is the generated webhook configuration for namespace ns
// only, at url, failing open as the chart's default does.
func outageWebhook(t *testing.T, ns, url string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Name = "stsbind-realnode-" + ns
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url), CABundle: suite.Node.CA.CertPEM}
		w.FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	}
	return &cfg
}

// sleeperPod runs as ServiceAccount app until it is deleted.
func sleeperPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](images.NonRoot), RunAsGroup: ptr.To[int64](images.NonRoot),
			},
			Containers: []corev1.Container{{
				Name: "app", Image: images.BusyboxName, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
}

func hasVolume(p *corev1.Pod, name string) bool {
	for _, v := range p.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

func waitPodRunning(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); pod.Status.Phase != corev1.PodRunning; time.Sleep(250 * time.Millisecond) {
		if err := suite.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			t.Fatalf("pod %s not Running: %s\npods:\n%s", pod.Name, pod.Status.Phase, suite.Pods(pod.Namespace))
		}
	}
}

// waitReported waits until the binding reports want pods without
// credentials, its condition naming pod (when want > 0).
func waitReported(t *testing.T, b *stsbindv1.IAMRoleBinding, want int, pod string) {
	t.Helper()
	var c *metav1.Condition
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := suite.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		c = meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionPodsInjected)
		n := b.Status.PodsWithoutCredentials
		if n != nil && int(*n) == want && c != nil && (want == 0) == (c.Status == metav1.ConditionTrue) && strings.Contains(c.Message, pod) {
			t.Logf("binding %s: podsWithoutCredentials %d, %s=%s: %s", b.Name, *n, c.Type, c.Status, c.Message)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("binding %s: podsWithoutCredentials %v, condition %+v; want %d naming %q\n%s", b.Name, n, c, want, pod, operatorLog())
		}
	}
}
