package realnode

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
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/webhook"
)

// TestPodsListABucket: in each mode a real pod, as user 65532 with a
// read-only root filesystem, writes an object to MinIO and lists the bucket
// with the credentials the webhook injected; its own log shows the listing.
// Files mode needs sh and cat (credential_process), so it runs the busybox
// image; Env and Endpoint run the image with nothing but the client.
func TestPodsListABucket(t *testing.T) {
	for _, tc := range []struct {
		mode  stsbindv1.InjectionMode
		image string
	}{
		{stsbindv1.InjectionFiles, images.BusyboxName},
		{stsbindv1.InjectionEnv, images.S3ClientName},
		{stsbindv1.InjectionEndpoint, images.S3ClientName},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t)
			name := strings.ToLower(string(tc.mode))
			waitReady(t, createBinding(t, ns, name, tc.mode))
			bucket := name + "-" + strings.ToLower(rand.String(6))
			pod := appPod(ns, "app", tc.image, bucket, name+".txt")
			start := time.Now()
			if err := k8s.Create(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			final, started := waitPodDone(t, pod)
			done := time.Since(start)
			log := podLog(t, ns, pod.Name, "app")
			if final.Status.Phase != corev1.PodSucceeded || !strings.Contains(log, "object: "+name+".txt") {
				t.Fatalf("pod %s: %s\n%s\nlog:\n%s", pod.Name, final.Status.Phase, describe(final), log)
			}
			t.Logf("%s mode: app container seen started %s after the pod was created, pod Succeeded after %s; its log:\n%s",
				tc.mode, started.Sub(start).Round(time.Millisecond), done.Round(time.Millisecond), log)
			if tc.mode == stsbindv1.InjectionEndpoint && !hasSidecar(final) {
				t.Errorf("Endpoint pod without the %s sidecar", webhook.SidecarName)
			}
		})
	}
}

// TestEndpointJobCompletes: a Job's pod gets the native sidecar; the Job
// completes when the app exits, the sidecar does not keep it running.
func TestEndpointJobCompletes(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	waitReady(t, createBinding(t, ns, "job", stsbindv1.InjectionEndpoint))
	tmpl := appPod(ns, "", images.S3ClientName, "job-"+strings.ToLower(rand.String(6)), "job.txt")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lister"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template:     corev1.PodTemplateSpec{Spec: tmpl.Spec},
		},
	}
	start := time.Now()
	if err := k8s.Create(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	var last string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(job), job); err != nil {
			t.Fatal(err)
		}
		if c := jobCondition(job, batchv1.JobComplete); c {
			break
		}
		if jobCondition(job, batchv1.JobFailed) || time.Now().After(deadline) {
			t.Fatalf("job did not complete: %+v\npods: %s", job.Status, last)
		}
		last = jobPods(t, ns)
		time.Sleep(500 * time.Millisecond)
	}
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{"job-name": job.Name}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("job pods: %v %d", err, len(pods.Items))
	}
	p := &pods.Items[0]
	log := podLog(t, ns, p.Name, "app")
	if !hasSidecar(p) || !strings.Contains(log, "object: job.txt") {
		t.Fatalf("job pod: sidecar %v, log:\n%s", hasSidecar(p), log)
	}
	t.Logf("Endpoint Job complete %s after creation; app log:\n%s", time.Since(start).Round(time.Millisecond), log)
}

// --- helpers -------------------------------------------------------------------

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := "rn-" + strings.ToLower(rand.String(6))
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	return ns
}

func createBinding(t *testing.T, ns, name string, mode stsbindv1.InjectionMode) *stsbindv1.IAMRoleBinding {
	t.Helper()
	b := &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: "app", RoleARN: minio.RoleARN, Region: region,
			Injection: stsbindv1.Injection{Mode: mode},
		},
	}
	if err := k8s.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func waitReady(t *testing.T, b *stsbindv1.IAMRoleBinding) {
	t.Helper()
	var c *metav1.Condition
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		if c = meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
			return
		}
	}
	t.Fatalf("binding %s/%s not Ready: %+v\noperator log:\n%s", b.Namespace, b.Name, c, operator.tail(30))
}

// appPod runs the S3 client once as the non-root user with a read-only root.
func appPod(ns, name, image, bucket, key string) *corev1.Pod {
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
				Args:            []string{"-endpoint", s3URL, "-bucket", bucket, "-key", key},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem:   ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// waitPodDone polls the pod until it has succeeded or failed, and returns
// it with the time its app container was first seen started (the status's
// own timestamps have one-second resolution).
func waitPodDone(t *testing.T, pod *corev1.Pod) (*corev1.Pod, time.Time) {
	t.Helper()
	var p corev1.Pod
	var started time.Time
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), &p); err != nil {
			t.Fatal(err)
		}
		if started.IsZero() && appStarted(&p) {
			started = time.Now()
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return &p, started
		}
	}
	t.Fatalf("pod %s/%s not done after 3m:\n%s", pod.Namespace, pod.Name, describe(&p))
	return nil, started
}

var clientset = func() func() *kubernetes.Clientset {
	var cs *kubernetes.Clientset
	return func() *kubernetes.Clientset {
		if cs == nil {
			cs = kubernetes.NewForConfigOrDie(cluster.Config)
		}
		return cs
	}
}()

// podLog reads a container's log through the API server, which fetches
// it from kubelet.
func podLog(t *testing.T, ns, pod, container string) string {
	t.Helper()
	raw, err := clientset().CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", pod, container, err)
	}
	return string(raw)
}

func appStarted(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "app" && (s.State.Running != nil || s.State.Terminated != nil) {
			return true
		}
	}
	return false
}

func hasSidecar(p *corev1.Pod) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == webhook.SidecarName {
			return true
		}
	}
	return false
}

func jobCondition(j *batchv1.Job, typ batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobPods(t *testing.T, ns string) string {
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var out []string
	for i := range pods.Items {
		out = append(out, describe(&pods.Items[i]))
	}
	return strings.Join(out, "\n")
}

// describe is a pod's phase, conditions and container states, for failures.
func describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s phase %s %s\n", p.Name, p.Status.Phase, p.Status.Message)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "  container %s: %+v\n", s.Name, s.State)
	}
	return b.String()
}
