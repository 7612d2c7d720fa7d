package chart

import (
	"context"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/internal/testrig/images"
)

// TestRollingRestartInjectsEveryPod: pods created all through a rolling
// restart of the operator (what every upgrade does) are injected. A replica
// that stopped serving on SIGTERM left the API server a moment in which the
// Service still sent it webhook calls; with failurePolicy Ignore those pods
// started without credentials. The operator now serves --shutdown-delay
// longer, and a new replica is ready as soon as its caches are. Measured
// here: with webhook.shutdownDelaySeconds=0, 5 of 1,319 pods in one rollout
// missed injection (within 90 ms); with 5 s, none of 1,735.
func TestRollingRestartInjectsEveryPod(t *testing.T) {
	requireChart(t)
	ctx := context.Background()
	webhookSteady(t)
	old := map[string]bool{}
	for _, p := range operatorPods(t) {
		old[p.Name] = true
	}

	var mu sync.Mutex
	created, missed := 0, []string{}
	stop := make(chan struct{})
	var probes sync.WaitGroup
	// Four probes back to back: the gap to find may be a fraction of a second.
	for range 4 {
		probes.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				pod := suite.AppPod(probeNamespace.name, "probe", images.S3ClientName, "probe", "probe")
				err := suite.Client.Create(ctx, pod, client.DryRunAll)
				mu.Lock()
				created++
				if err != nil || len(pod.Spec.Volumes) <= 1 {
					why := "not injected"
					if err != nil {
						why = err.Error()
					}
					missed = append(missed, time.Now().Format("15:04:05.000")+" "+why)
				}
				mu.Unlock()
			}
		})
	}

	var d appsv1.Deployment
	if err := suite.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] = time.Now().Format(time.RFC3339)
	start := time.Now()
	if err := suite.Client.Patch(ctx, &d, patch); err != nil {
		t.Fatal(err)
	}
	leader := waitOperator(t, old)
	took := time.Since(start)
	// A little longer: the last old replica's connections end after it is gone.
	time.Sleep(2 * time.Second)
	close(stop)
	probes.Wait()

	t.Logf("FIGURE rolling restart: %d pods created in %s while both replicas were replaced (%s leads), %d not injected",
		created, took.Round(time.Second), leader, len(missed))
	// Without the delay 5 of 1,319 (0.38 %) missed; with it 0 of 1,735 and
	// 1 of 1,733 (a connection closed as the last old replica stopped).
	// More than 1 in 1,000 is the gap coming back.
	if len(missed)*1000 > created {
		for _, m := range missed {
			t.Errorf("pod admitted without injection during the rollout: %s", m)
		}
	}
	if created < 100 {
		t.Errorf("only %d pods created during the rollout: the test proves little", created)
	}
}
