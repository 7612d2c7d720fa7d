package realnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/webhook"
)

// missingRole is a role MinIO does not know: it refuses it with
// InvalidParameterValue, a fault no retry clears.
const missingRole = "arn:minio:iam:::role/stsbind-missing"

// TestStuckBindingPodsStart: a pod of a ServiceAccount whose binding cannot
// get credentials starts its containers, and its AWS client gets
// credentials once the binding is fixed and the Secret appears. Files and
// Endpoint mount the Secret optional, so every container starts; Env keeps
// the containers that take its variables waiting (their values are fixed
// at start) while the others, left out by spec.injection.containers, run.
func TestStuckBindingPodsStart(t *testing.T) {
	for _, mode := range []stsbindv1.InjectionMode{stsbindv1.InjectionFiles, stsbindv1.InjectionEndpoint, stsbindv1.InjectionEnv} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := suite.Namespace(t, "stuck", nil)
			name := strings.ToLower(string(mode))
			b := suite.CreateBinding(t, ns, name, mode, func(b *stsbindv1.IAMRoleBinding) {
				b.Spec.RoleARN = missingRole
				if mode == stsbindv1.InjectionEnv {
					b.Spec.Injection.Containers = []string{"app"}
				}
			})
			reason := waitStuck(t, b)

			pod := stuckPod(ns, name, mode)
			if err := suite.Client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if got := pod.Annotations[webhook.AnnotationNotes]; !strings.Contains(got, "not Ready ("+reason+")") {
				t.Errorf("pod notes %q do not say the binding is not Ready (%s)", got, reason)
			}
			waitContainers(t, pod, "while the binding is stuck", func(p *corev1.Pod) bool {
				if !running(p, "other") {
					return false
				}
				if mode == stsbindv1.InjectionEnv {
					return waitingFor(p, "app") == "CreateContainerConfigError"
				}
				return running(p, "app")
			})

			// Let kubelet settle into its periodic sync of a running pod, as
			// for a binding fixed minutes later, so that the figure below is
			// kubelet's steady state rather than the bustle of a pod start.
			waitContainers(t, pod, "for 30s", func(p *corev1.Pod) bool { return startedBefore(p, "other", time.Now().Add(-30*time.Second)) })

			// Fix the binding: the controller retries at once on a spec change.
			if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
				t.Fatal(err)
			}
			b.Spec.RoleARN = suite.MinIO.RoleARN
			if err := suite.Client.Update(ctx, b); err != nil {
				t.Fatal(err)
			}
			suite.WaitReady(t, b, operatorLog)
			ready := time.Now()
			want := "object: " + name + ".txt"
			if mode == stsbindv1.InjectionEndpoint {
				want = ": ok" // a round of the one long-running client
			}
			log := waitLog(t, pod, "app", want, 4*time.Minute)
			t.Logf("%s mode: the app container's S3 call succeeded %s after the binding got Ready (its Secret written); other container kept running; app log tail:\n%s",
				mode, time.Since(ready).Round(100*time.Millisecond), tail(log, 4))
		})
	}
}

// stuckPod has an AWS client "app" and a container "other" that never uses
// AWS. In Files mode the client is started anew each second until it
// succeeds (a process reads AWS_CONFIG_FILE when it starts); in Endpoint
// mode one long-running client retries each second; in Env mode it runs
// once, when kubelet can start it.
func stuckPod(ns, name string, mode stsbindv1.InjectionMode) *corev1.Pod {
	bucket := "stuck-" + name + "-" + strings.ToLower(rand.String(6))
	key := name + ".txt"
	pod := suite.AppPod(ns, "app", realnodetest.ImageFor(mode), bucket, key)
	app := &pod.Spec.Containers[0]
	// No instance metadata here: without it a client lacking credentials
	// fails at once instead of waiting for 169.254.169.254.
	app.Env = append(app.Env, corev1.EnvVar{Name: "AWS_EC2_METADATA_DISABLED", Value: "true"})
	switch mode {
	case stsbindv1.InjectionFiles:
		app.Command = []string{"/bin/sh", "-c", fmt.Sprintf(
			"until /s3client -endpoint %s -bucket %s -key %s; do sleep 1; done", suite.S3URL, bucket, key)}
		app.Args = nil
	case stsbindv1.InjectionEndpoint:
		app.Args = append(app.Args, "-every", "1s", "-for", "10m")
	}
	other := corev1.Container{
		Name: "other", Image: images.BusyboxName, ImagePullPolicy: corev1.PullNever,
		Command:         []string{"/bin/sh", "-c", "echo other started; exec sleep 3600"},
		SecurityContext: app.SecurityContext.DeepCopy(),
	}
	pod.Spec.Containers = append(pod.Spec.Containers, other)
	return pod
}

// TestHostNetworkEndpointPods: two hostNetwork pods of an Endpoint binding
// on one node both run their clients at the same time. They share the
// node's loopback, so the webhook gives them Files instead of a sidecar
// whose port the second one could not bind.
func TestHostNetworkEndpointPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := suite.Namespace(t, "hostnet", nil)
	suite.Binding(t, ns, "hostnet", stsbindv1.InjectionEndpoint, operatorLog)
	var pods []*corev1.Pod
	for i := range 2 {
		pod := suite.AppPod(ns, fmt.Sprintf("hostnet-%d", i), images.BusyboxName, "hostnet-"+strings.ToLower(rand.String(6)), "hostnet.txt")
		pod.Spec.HostNetwork = true
		// Long-running clients: both must hold credentials at the same time.
		pod.Spec.Containers[0].Args = append(pod.Spec.Containers[0].Args, "-every", "1s", "-for", "10m")
		if err := suite.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if realnodetest.HasSidecar(pod) {
			t.Errorf("hostNetwork pod %s got the %s sidecar", pod.Name, webhook.SidecarName)
		}
		if got := pod.Annotations[webhook.AnnotationNotes]; !strings.Contains(got, "Files instead of Endpoint") {
			t.Errorf("pod %s notes %q do not say Files replaced Endpoint", pod.Name, got)
		}
		pods = append(pods, pod)
	}
	for _, pod := range pods {
		waitLog(t, pod, "app", ": ok", 3*time.Minute)
	}
	for _, pod := range pods {
		var p corev1.Pod
		if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
			t.Fatal(err)
		}
		if !running(&p, "app") {
			t.Errorf("pod %s: app not running while the other pod's is:\n%s", p.Name, realnodetest.Describe(&p))
		}
	}
}

// TestSidecarKeepsQoSAndQuota: in a namespace whose ResourceQuota covers
// limits.cpu and limits.memory (and no LimitRange fills them in), an
// Endpoint pod whose container sets requests equal to limits is admitted,
// stays Guaranteed, and its client gets credentials from the sidecar,
// which runs within the limits it took from the pod.
func TestSidecarKeepsQoSAndQuota(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := suite.Namespace(t, "quota", nil)
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "compute"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceLimitsCPU: resource.MustParse("2"), corev1.ResourceLimitsMemory: resource.MustParse("2Gi"),
			corev1.ResourceRequestsCPU: resource.MustParse("2"), corev1.ResourceRequestsMemory: resource.MustParse("2Gi"),
		}},
	}
	if err := suite.Client.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	// The quota admits pods once kube-controller-manager has filled in its status.
	for deadline := time.Now().Add(time.Minute); len(quota.Status.Hard) == 0; time.Sleep(100 * time.Millisecond) {
		if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(quota), quota); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the ResourceQuota's status was never filled in")
		}
	}
	suite.Binding(t, ns, "guaranteed", stsbindv1.InjectionEndpoint, operatorLog)
	pod := suite.AppPod(ns, "app", images.S3ClientName, "quota-"+strings.ToLower(rand.String(6)), "quota.txt")
	both := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: both, Limits: both}
	start := time.Now()
	if err := suite.Client.Create(ctx, pod); err != nil {
		t.Fatalf("the quota refused the Endpoint pod: %v", err)
	}
	if !realnodetest.HasSidecar(pod) {
		t.Fatalf("pod without the %s sidecar", webhook.SidecarName)
	}
	if pod.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("pod QoS class %q, want Guaranteed (its container sets requests equal to limits); sidecar resources %+v",
			pod.Status.QOSClass, pod.Spec.InitContainers[0].Resources)
	}
	done, seen := suite.WaitPodDone(t, pod)
	log := suite.PodLog(t, ns, pod.Name, "app")
	if done.Status.Phase != corev1.PodSucceeded || !strings.Contains(log, "object: quota.txt") {
		t.Fatalf("pod %s\nlog:\n%s", realnodetest.Describe(done), log)
	}
	// Compare with TestPodsListABucket/Endpoint, whose sidecar has no CPU limit.
	t.Logf("Guaranteed Endpoint pod (sidecar limited to %s CPU, %s memory): app container seen started %s after the pod was created (its sidecar's startup probe passed), pod Succeeded after %s",
		done.Spec.InitContainers[0].Resources.Limits.Cpu(), done.Spec.InitContainers[0].Resources.Limits.Memory(),
		seen.Sub(start).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// waitStuck waits until the binding is Ready=False for its spec, and
// returns the reason.
func waitStuck(t *testing.T, b *stsbindv1.IAMRoleBinding) string {
	t.Helper()
	var c *metav1.Condition
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := suite.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		c = meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionFalse && c.ObservedGeneration == b.Generation {
			return c.Reason
		}
	}
	t.Fatalf("binding %s/%s never Ready=False: %+v\n%s", b.Namespace, b.Name, c, operatorLog())
	return ""
}

// waitContainers polls the pod until ok holds.
func waitContainers(t *testing.T, pod *corev1.Pod, what string, ok func(*corev1.Pod) bool) {
	t.Helper()
	var p corev1.Pod
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err := suite.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &p); err != nil {
			t.Fatal(err)
		}
		if ok(&p) {
			return
		}
	}
	t.Fatalf("pod %s/%s %s: containers not as expected:\n%s", pod.Namespace, pod.Name, what, realnodetest.Describe(&p))
}

func running(p *corev1.Pod, container string) bool {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container {
			return st.State.Running != nil
		}
	}
	return false
}

func startedBefore(p *corev1.Pod, container string, t time.Time) bool {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container && st.State.Running != nil {
			return st.State.Running.StartedAt.Time.Before(t)
		}
	}
	return false
}

func waitingFor(p *corev1.Pod, container string) string {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container && st.State.Waiting != nil {
			return st.State.Waiting.Reason
		}
	}
	return ""
}

// waitLog polls a container's log until it holds want.
func waitLog(t *testing.T, pod *corev1.Pod, container, want string, timeout time.Duration) string {
	t.Helper()
	var log string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		raw, err := suite.Clientset.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
		if err == nil {
			if log = string(raw); strings.Contains(log, want) {
				return log
			}
		}
	}
	var p corev1.Pod
	_ = suite.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &p)
	t.Fatalf("pod %s/%s: %s log never held %q:\n%s\n%s", pod.Namespace, pod.Name, container, want, tail(log, 10), realnodetest.Describe(&p))
	return ""
}

func tail(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
