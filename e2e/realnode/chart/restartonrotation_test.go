package chart

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
)

// TestRestartOnRotationRollsEnvDeployment: a Deployment whose pod holds a
// binding's credentials in environment variables (Env mode, a Go client
// writing an object every second) is rolled out by the real
// kube-controller-manager when the controller refreshes the credentials,
// and the new pod signs with the new key.
//
// The first credentials come through realnodetest.STSFront: MinIO stops
// accepting them at cutoff, and their declared Expiration is cutoff too, so
// the controller refreshes them on its own schedule (a third of their
// lifetime before it, about 50 s): an ordinary refresh, no spec change. The
// rollout must be done by cutoff, when the old pod's key stops working.
// The chart's RBAC is what allows the pod list and the patch.
func TestRestartOnRotationRollsEnvDeployment(t *testing.T) {
	requireChart(t)
	ctx := context.Background()
	front, err := suite.NewSTSFront()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(front.Close)
	provider := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: "rollout-" + strings.ToLower(rand.String(5))},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region: realnodetest.Region, Endpoint: front.URL, Audience: "sts.amazonaws.com",
			NamespaceSelector: &metav1.LabelSelector{}, AllowedRoleARNs: []stsbindv1.RoleARNPattern{"arn:minio:iam:::role/*"},
		},
	}
	if err := suite.Client.Create(ctx, provider); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.Client.Delete(context.Background(), provider) })

	ns := suite.Namespace(t, "rollout", nil)
	start := time.Now()
	cutoff := start.Add(150 * time.Second).Truncate(time.Second)
	front.SetPlan(ns, realnodetest.Plan{Cutoff: cutoff, Expiration: cutoff})
	r := &rotating{mode: stsbindv1.InjectionEnv, ns: ns}
	r.watchKeys(t, "creds")
	r.binding = suite.CreateBinding(t, ns, "creds", stsbindv1.InjectionEnv, func(b *stsbindv1.IAMRoleBinding) {
		b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: provider.Name}
		b.Spec.SessionName = ns
		b.Spec.Injection.RestartOnRotation = stsbindv1.RestartRollout
	})
	dep := envDeployment(ns, "writer")
	if err := suite.Client.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}

	// The first pod writes with the first key.
	var firstPod string
	err = poll(time.Until(cutoff.Add(-70*time.Second)), func() error {
		pods := deploymentPods(t, ns)
		if len(pods) != 1 {
			return fmt.Errorf("%d pods", len(pods))
		}
		if !readsCredentials(&pods[0]) {
			return fmt.Errorf("pod %s not injected (env %v)", pods[0].Name, pods[0].Spec.Containers[0].Env)
		}
		firstPod = pods[0].Name
		if r.oldKey = front.Issued(ns); r.oldKey == "" {
			return fmt.Errorf("no credentials issued yet")
		}
		if n := countOK(parseWrites(podLog(ns, firstPod, "app")), r.oldKey); n < 3 {
			return fmt.Errorf("%d writes with the first key", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("before the rotation: %v\n%s\n%s", err, suite.Pods(ns), operatorLogs())
	}
	first := secretOf(t, r.binding)
	if got := restartAnnotation(t, dep); got != "" {
		t.Errorf("the first credentials restarted the Deployment: %q", got)
	}

	if r.newKey, r.written = r.waitNewKey(t, time.Until(cutoff)); r.newKey == "" {
		t.Fatalf("the controller did not refresh the credentials before cutoff\n%s", operatorLogs())
	}
	t.Logf("Secret written with the new key %s after the test began, %s before cutoff",
		r.written.Sub(start).Round(time.Millisecond), cutoff.Sub(r.written).Round(time.Millisecond))
	want := secretOf(t, r.binding).Annotations[stsbindv1.AnnotationDataHash][:16]

	// The rollout: the template carries the new credentials' identity, the
	// new pod is up with the new key, the old one is gone.
	var annotated, rolled time.Time
	var newPod string
	err = poll(time.Until(cutoff.Add(30*time.Second)), func() error {
		if annotated.IsZero() {
			if got := restartAnnotation(t, dep); got != want {
				return fmt.Errorf("template annotation %q, want %q", got, want)
			}
			annotated = time.Now()
		}
		pods := deploymentPods(t, ns)
		if len(pods) != 1 || pods[0].Name == firstPod || pods[0].DeletionTimestamp != nil {
			return fmt.Errorf("pods %v", podNames(pods))
		}
		newPod = pods[0].Name
		if rolled.IsZero() {
			rolled = time.Now()
		}
		if countOK(parseWrites(podLog(ns, newPod, "app")), r.newKey) == 0 {
			return fmt.Errorf("the new pod %s has not written with the new key", newPod)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("rollout: %v\n%s\n%s", err, suite.Pods(ns), operatorLogs())
	}
	t.Logf("FIGURE restart on rotation: Secret write to the annotated template %.1f s, to the old pod gone %.1f s (%.1f s before the old key's cutoff)",
		annotated.Sub(r.written).Seconds(), rolled.Sub(r.written).Seconds(), cutoff.Sub(rolled).Seconds())
	if !rolled.Before(cutoff) {
		t.Errorf("the rollout ended %s after the old credentials stopped working", rolled.Sub(cutoff))
	}

	// Past cutoff the new pod still writes: with the new key.
	err = poll(time.Until(cutoff.Add(40*time.Second)), func() error {
		ws := parseWrites(podLog(ns, newPod, "app"))
		after := 0
		for _, w := range ws {
			switch {
			case w.Error == "" && w.AccessKeyID != r.newKey:
				return fmt.Errorf("the new pod wrote with key %s", w.AccessKeyID)
			case w.Error == "" && w.Time.After(cutoff.Add(revocationSlack)):
				after++
			}
		}
		if after < 5 {
			return fmt.Errorf("%d writes after cutoff", after)
		}
		return nil
	})
	if err != nil {
		t.Errorf("after cutoff: %v\nlog:\n%s", err, podLog(ns, newPod, "app"))
	}
	staticFirstKeyFails(t, first, cutoff)

	// One rotation, one rollout: two ReplicaSets, one restart in status and
	// one event.
	var sets appsv1.ReplicaSetList
	if err := suite.Client.List(ctx, &sets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(sets.Items) != 2 {
		t.Errorf("%d ReplicaSets, want 2 (one rollout)", len(sets.Items))
	}
	var b stsbindv1.IAMRoleBinding
	if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(r.binding), &b); err != nil {
		t.Fatal(err)
	}
	st := b.Status.Restart
	if st == nil || st.Credentials != want || len(st.Workloads) != 1 || st.Workloads[0].Name != "writer" ||
		st.Workloads[0].Credentials != want || st.Workloads[0].LastRestartTime == nil {
		t.Errorf("status.restart: %+v", st)
	}
	var evs eventsv1.EventList
	if err := suite.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	restarted := 0
	for _, e := range evs.Items {
		if e.Reason == stsbindv1.ReasonRolloutRestarted {
			restarted++
			t.Logf("event: %s", e.Note)
		}
	}
	if restarted != 1 {
		t.Errorf("%d RolloutRestarted events, want 1", restarted)
	}
}

// envDeployment runs the S3 client's write loop as ServiceAccount app, one
// replica, as the non-root user with a read-only root filesystem.
func envDeployment(ns, name string) *appsv1.Deployment {
	pod := suite.AppPod(ns, name, realnodetest.ImageFor(stsbindv1.InjectionEnv), ns, "w")
	spec := pod.Spec
	spec.RestartPolicy = corev1.RestartPolicyAlways
	spec.Containers[0].Args = append(spec.Containers[0].Args, "-loop")
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

func deploymentPods(t *testing.T, ns string) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := suite.Client.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{"app": "writer"}); err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		s := p.Name + ":" + string(p.Status.Phase)
		if p.DeletionTimestamp != nil {
			s += "(terminating)"
		}
		out = append(out, s)
	}
	return out
}

// readsCredentials tells whether the webhook gave the pod the binding's
// variables.
func readsCredentials(p *corev1.Pod) bool {
	for _, e := range p.Spec.Containers[0].Env {
		if e.Name == "AWS_ACCESS_KEY_ID" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "creds" {
			return true
		}
	}
	return false
}

func restartAnnotation(t *testing.T, dep *appsv1.Deployment) string {
	t.Helper()
	var d appsv1.Deployment
	if err := suite.Client.Get(context.Background(), client.ObjectKeyFromObject(dep), &d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Annotations[stsbindv1.AnnotationRestartPrefix+"creds"]
}
