// Package drain keeps the operator serving for a while after it is told to
// stop. When a pod is deleted, the API server's way to the webhook (the
// Service's endpoints, kube-proxy's rules) lets go of the pod only a moment
// later; a webhook that stops at once makes pods created in that moment miss
// injection (failurePolicy Ignore) or fail (Fail).
package drain

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// After returns a context that is cancelled delay after parent is: the
// manager keeps its webhook, leader lease and reconciles for delay more.
// notify, when not nil, runs as parent ends, before the delay.
func After(parent context.Context, delay time.Duration, clk clock.Clock, notify func()) context.Context {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	go func() {
		defer cancel()
		<-parent.Done()
		if notify != nil {
			notify()
		}
		if delay > 0 {
			<-clk.After(delay)
		}
	}()
	return ctx
}
