package controllers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// TestAudienceGuardReviewsOncePerAudience starts 16 workers on one new
// audience while the API server holds the first TokenReview: one review is
// sent and every worker gets its verdict. A second audience gets its own.
func TestAudienceGuardReviewsOncePerAudience(t *testing.T) {
	t.Parallel()
	var reviews atomic.Int32
	hold := make(chan struct{})
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
			tr, ok := obj.(*authv1.TokenReview)
			if !ok {
				t.Errorf("unexpected create of %T", obj)
				return nil
			}
			reviews.Add(1)
			<-hold
			tr.Status.Authenticated = tr.Spec.Token == "token-of-kube-audience"
			return nil
		},
	}).Build()
	g := &AudienceGuard{Client: c}
	now := time.Now()

	const workers = 16
	var started, done sync.WaitGroup
	verdicts := make([]bool, workers)
	for i := range workers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			accepted, err := g.Check(context.Background(), "https://kubernetes.default.svc", "token-of-kube-audience", now)
			if err != nil {
				t.Error(err)
			}
			verdicts[i] = accepted
		}()
	}
	started.Wait()
	// Give a guard without the single flight time to send its extra
	// reviews; the count below does not depend on this wait.
	deadline := time.Now().Add(200 * time.Millisecond)
	for reviews.Load() < workers && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(hold)
	done.Wait()
	if n := reviews.Load(); n != 1 {
		t.Errorf("%d TokenReviews for one audience and %d workers, want 1", n, workers)
	}
	for i, v := range verdicts {
		if !v {
			t.Errorf("worker %d did not get the verdict (accepted by the API server)", i)
		}
	}
	if accepted, err := g.Check(context.Background(), "sts.amazonaws.com", "token-of-sts-audience", now); err != nil || accepted {
		t.Errorf("second audience: accepted %v, err %v; want its own review saying not accepted", accepted, err)
	}
	if n := reviews.Load(); n != 2 {
		t.Errorf("%d TokenReviews for two audiences, want 2", n)
	}
}
