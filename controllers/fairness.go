package controllers

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
)

// fairGate paces each namespace's STS calls through a provider, so that one
// namespace's thousands of due bindings never queue ahead of another
// namespace's one. A binding over its namespace's pace gets a slot and is
// requeued for it, without holding a worker; the provider's own limiter
// (stsclient) then bounds the total.
type fairGate struct {
	mu       sync.Mutex
	limiters map[gateKey]*rate.Limiter
	slots    map[types.NamespacedName]time.Time
}

type gateKey struct{ provider, namespace string }

// minWait is the shortest wait worth a requeue; shorter ones go on to the
// provider's limiter at once.
const minWait = 50 * time.Millisecond

// admit returns zero when the binding may call STS now, else how long to
// wait for its slot. A binding that already holds a slot keeps it.
func (g *fairGate) admit(provider string, qps float64, burst int, key types.NamespacedName, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.slots == nil {
		g.slots, g.limiters = map[types.NamespacedName]time.Time{}, map[gateKey]*rate.Limiter{}
	}
	if slot, ok := g.slots[key]; ok {
		if wait := slot.Sub(now); wait >= minWait {
			return wait
		}
		delete(g.slots, key)
		return 0
	}
	gk := gateKey{provider, key.Namespace}
	l, ok := g.limiters[gk]
	if !ok {
		l = rate.NewLimiter(rate.Limit(qps), burst)
		g.limiters[gk] = l
	} else if l.Limit() != rate.Limit(qps) || l.Burst() != burst {
		l.SetLimitAt(now, rate.Limit(qps))
		l.SetBurstAt(now, burst)
	}
	wait := l.ReserveN(now, 1).DelayFrom(now)
	if wait < minWait {
		return 0
	}
	g.slots[key] = now.Add(wait)
	return wait
}

// pending returns how long a binding that already holds a slot still waits
// for it; zero when it holds none or its slot has come.
func (g *fairGate) pending(key types.NamespacedName, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if wait := g.slots[key].Sub(now); wait >= minWait {
		return wait
	}
	return 0
}

// release drops the binding's slot (it no longer needs STS, or is gone).
func (g *fairGate) release(key types.NamespacedName) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.slots, key)
}

// forget drops a provider's namespace limiters (the provider was deleted).
func (g *fairGate) forget(provider string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.limiters {
		if k.provider == provider {
			delete(g.limiters, k)
		}
	}
}
