package drain

import (
	"context"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestAfter(t *testing.T) {
	t.Parallel()
	for name, delay := range map[string]time.Duration{"5s": 5 * time.Second, "none": 0} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := clocktesting.NewFakeClock(time.Now())
			parent, stop := context.WithCancel(context.Background())
			notified := make(chan struct{})
			ctx := After(parent, delay, clk, func() { close(notified) })
			select {
			case <-ctx.Done():
				t.Fatal("done before the parent")
			case <-notified:
				t.Fatal("notified before the parent ended")
			default:
			}
			stop()
			<-notified
			if delay > 0 {
				// The goroutine waits on the fake clock: nothing ends
				// until the clock moves past the delay.
				for !clk.HasWaiters() {
					time.Sleep(time.Millisecond)
				}
				select {
				case <-ctx.Done():
					t.Fatal("done before the delay passed")
				default:
				}
				clk.Step(delay - time.Millisecond)
				select {
				case <-ctx.Done():
					t.Fatal("done before the delay passed")
				case <-time.After(10 * time.Millisecond):
				}
				clk.Step(time.Millisecond)
			}
			<-ctx.Done()
		})
	}
}
