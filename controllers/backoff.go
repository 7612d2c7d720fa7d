package controllers

import (
	"math/rand/v2"
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// failureRateLimiter is exponential per-binding backoff with jitter: the delay
// is drawn from [d/2, d] where d doubles with every consecutive failure, so
// bindings that failed together (an STS outage) do not retry in lockstep.
type failureRateLimiter struct {
	workqueue.TypedRateLimiter[reconcile.Request]
}

func newFailureRateLimiter(base, maxDelay time.Duration) workqueue.TypedRateLimiter[reconcile.Request] {
	return failureRateLimiter{workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](base, maxDelay)}
}

func (l failureRateLimiter) When(item reconcile.Request) time.Duration {
	d := l.TypedRateLimiter.When(item)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
