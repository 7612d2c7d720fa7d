package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/images"
)

func operatorLog() string { return "operator log:\n" + operator.tail(30) }

// TestPodsListABucket: in each mode a real pod, as user 65532 with a
// read-only root filesystem, writes an object to MinIO and lists the bucket
// with the credentials the webhook injected; its own log shows the listing.
// Files mode runs the busybox image (credential_process needs sh and cat);
// Env and Endpoint run the image with nothing but the client.
func TestPodsListABucket(t *testing.T) {
	for _, mode := range []stsbindv1.InjectionMode{stsbindv1.InjectionFiles, stsbindv1.InjectionEnv, stsbindv1.InjectionEndpoint} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			ns := suite.Namespace(t, "rn", nil)
			suite.Binding(t, ns, strings.ToLower(string(mode)), mode, operatorLog)
			_, log, started, done := suite.RunApp(t, ns, mode)
			t.Logf("%s mode: app container seen started %s after the pod was created, pod Succeeded after %s; its log:\n%s",
				mode, started.Round(time.Millisecond), done.Round(time.Millisecond), log)
		})
	}
}

// TestEndpointJobCompletes: a Job's pod gets the native sidecar; the Job
// completes when the app exits, the sidecar does not keep it running.
func TestEndpointJobCompletes(t *testing.T) {
	t.Parallel()
	ns := suite.Namespace(t, "rn", nil)
	suite.Binding(t, ns, "job", stsbindv1.InjectionEndpoint, operatorLog)
	tmpl := suite.AppPod(ns, "", images.S3ClientName, "job-"+strings.ToLower(rand.String(6)), "job.txt")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lister"},
		Spec:       batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: tmpl.Spec}},
	}
	start := time.Now()
	ctx := context.Background()
	if err := suite.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); !realnodetest.JobHas(job, batchv1.JobComplete); time.Sleep(250 * time.Millisecond) {
		if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			t.Fatal(err)
		}
		if realnodetest.JobHas(job, batchv1.JobFailed) || time.Now().After(deadline) {
			t.Fatalf("job did not complete: %+v\npods:\n%s", job.Status, suite.Pods(ns))
		}
	}
	took := time.Since(start)
	var pods corev1.PodList
	if err := suite.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"job-name": job.Name}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("job pods: %v, %d", err, len(pods.Items))
	}
	p := &pods.Items[0]
	log := suite.PodLog(t, ns, p.Name, "app")
	if !realnodetest.HasSidecar(p) || !strings.Contains(log, "object: job.txt") {
		t.Fatalf("job pod: sidecar %v, log:\n%s", realnodetest.HasSidecar(p), log)
	}
	t.Logf("Endpoint Job complete %s after creation; app log:\n%s", took.Round(time.Millisecond), log)
}
