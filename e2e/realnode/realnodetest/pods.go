package realnodetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/webhook"
)

// Namespace creates a namespace (name prefix plus a random suffix, with the
// labels) holding ServiceAccount app, deleted when the test ends.
func (s *Suite) Namespace(t testing.TB, prefix string, labels map[string]string) string {
	t.Helper()
	ns := prefix + "-" + strings.ToLower(rand.String(6))
	ctx := context.Background()
	if err := s.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	return ns
}

// Binding creates a binding of ServiceAccount app to MinIO's role and
// waits until it is Ready; diag is added to a failure (an operator log).
func (s *Suite) Binding(t testing.TB, ns, name string, mode stsbindv1.InjectionMode, diag func() string) *stsbindv1.IAMRoleBinding {
	t.Helper()
	b := s.CreateBinding(t, ns, name, mode)
	s.WaitReady(t, b, diag)
	return b
}

// CreateBinding creates a binding of ServiceAccount app to MinIO's role;
// each edit changes the binding before it is created.
func (s *Suite) CreateBinding(t testing.TB, ns, name string, mode stsbindv1.InjectionMode, edits ...func(*stsbindv1.IAMRoleBinding)) *stsbindv1.IAMRoleBinding {
	t.Helper()
	b := &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: "app", RoleARN: s.MinIO.RoleARN, Region: Region,
			Injection: stsbindv1.Injection{Mode: mode},
		},
	}
	for _, edit := range edits {
		edit(b)
	}
	if err := s.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// WaitReady waits until the binding is Ready; diag is added to a failure.
func (s *Suite) WaitReady(t testing.TB, b *stsbindv1.IAMRoleBinding, diag func() string) {
	t.Helper()
	var c *metav1.Condition
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := s.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		if c = meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
			return
		}
	}
	t.Fatalf("binding %s/%s not Ready: %+v\n%s", b.Namespace, b.Name, c, diag())
}

// ImageFor is the app image a mode works in: Files mode needs sh and cat
// (credential_process), the others run in an image with only the client.
func ImageFor(mode stsbindv1.InjectionMode) string {
	if mode == stsbindv1.InjectionFiles {
		return images.BusyboxName
	}
	return images.S3ClientName
}

// AppPod runs the S3 client once, writing key and listing bucket, as the
// non-root user with a read-only root filesystem.
func (s *Suite) AppPod(ns, name, image, bucket, key string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			RestartPolicy:      corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](images.NonRoot), RunAsGroup: ptr.To[int64](images.NonRoot),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"-endpoint", s.S3URL, "-bucket", bucket, "-key", key},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem:   ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// RunApp creates an app pod for the mode, waits until it is done, and
// fails unless it succeeded and its own log lists the object it wrote.
// It returns the log and when the app container was seen started and the
// pod Succeeded, counted from the create call.
func (s *Suite) RunApp(t testing.TB, ns string, mode stsbindv1.InjectionMode) (pod *corev1.Pod, log string, started, done time.Duration) {
	t.Helper()
	key := strings.ToLower(string(mode)) + ".txt"
	pod = s.AppPod(ns, "app", ImageFor(mode), strings.ToLower(string(mode))+"-"+strings.ToLower(rand.String(6)), key)
	start := time.Now()
	if err := s.Client.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	pod, seen := s.WaitPodDone(t, pod)
	done = time.Since(start)
	log = s.PodLog(t, ns, pod.Name, "app")
	if pod.Status.Phase != corev1.PodSucceeded || !strings.Contains(log, "object: "+key) {
		t.Fatalf("pod %s/%s: %s\n%s\nlog:\n%s", ns, pod.Name, pod.Status.Phase, Describe(pod), log)
	}
	if mode == stsbindv1.InjectionEndpoint && !HasSidecar(pod) {
		t.Errorf("Endpoint pod without the %s sidecar", webhook.SidecarName)
	}
	return pod, log, seen.Sub(start), done
}

// WaitPodDone polls the pod until it has succeeded or failed, and returns
// it with the time its app container was first seen started (the status's
// own timestamps have one-second resolution).
func (s *Suite) WaitPodDone(t testing.TB, pod *corev1.Pod) (*corev1.Pod, time.Time) {
	t.Helper()
	var p corev1.Pod
	var started time.Time
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := s.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &p); err != nil {
			t.Fatal(err)
		}
		if started.IsZero() && appStarted(&p) {
			started = time.Now()
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return &p, started
		}
	}
	t.Fatalf("pod %s/%s not done after 3m:\n%s", pod.Namespace, pod.Name, Describe(&p))
	return nil, started
}

// PodLog reads a container's log through the API server, from kubelet.
func (s *Suite) PodLog(t testing.TB, ns, pod, container string) string {
	t.Helper()
	raw, err := s.Clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", pod, container, err)
	}
	return string(raw)
}

func appStarted(p *corev1.Pod) bool {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == "app" && (st.State.Running != nil || st.State.Terminated != nil) {
			return true
		}
	}
	return false
}

// HasSidecar reports whether the webhook added the Endpoint-mode sidecar.
func HasSidecar(p *corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == webhook.SidecarName {
			return true
		}
	}
	return false
}

// JobHas reports whether the Job has the condition with status True.
func JobHas(j *batchv1.Job, typ batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Pods describes every pod of a namespace, for failures.
func (s *Suite) Pods(ns string) string {
	var pods corev1.PodList
	if err := s.Client.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var out []string
	for i := range pods.Items {
		out = append(out, Describe(&pods.Items[i]))
	}
	return strings.Join(out, "\n")
}

// Describe is a pod's phase, conditions and container states, for failures.
func Describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s phase %s %s\n", p.Name, p.Status.Phase, p.Status.Message)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "  container %s: %+v\n", st.Name, st.State)
	}
	return b.String()
}
