package webhook

import (
	"context"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// liveLister asks the API server for the bindings of a namespace, for every
// pod, and shares the answers. A pod created right after a binding was
// created or changed (its first binding, a second one, a new mode) must see
// it, and the informer cache may not have it yet: only an answer the API
// server gave after the pod's review arrived is sure to. A call that arrives
// while a List for the same namespace is running joins the next List, which
// starts when the running one ends: every caller gets an answer from a List
// that began after it arrived, and under load the API server sees one List
// per namespace per List latency instead of one per pod.
type liveLister struct {
	reader  client.Reader
	timeout time.Duration

	mu   sync.Mutex
	keys map[string]*liveState // by namespace
}

type liveState struct {
	running *liveRound // nil when no List runs
	next    *liveRound // the round that starts when running ends
}

type liveRound struct {
	done  chan struct{}
	items []stsbindv1.IAMRoleBinding
	err   error
}

func newLiveLister(r client.Reader, timeout time.Duration) *liveLister {
	return &liveLister{reader: r, timeout: timeout, keys: map[string]*liveState{}}
}

// list returns the bindings of namespace ns from a List that began after the
// call. The callers of one List share its items: they must not change them.
func (l *liveLister) list(ctx context.Context, ns string) ([]stsbindv1.IAMRoleBinding, error) {
	l.mu.Lock()
	st := l.keys[ns]
	if st == nil {
		st = &liveState{}
		l.keys[ns] = st
	}
	var r *liveRound
	switch {
	case st.running == nil:
		// No List runs: this caller runs one, on its own goroutine, whose
		// stack has grown already (a new goroutine's would grow again).
		r = &liveRound{done: make(chan struct{})}
		l.startLocked(st, r)
		l.mu.Unlock()
		l.run(ns, st, r)
		return r.items, r.err
	case st.next != nil:
		r = st.next
	default:
		r = &liveRound{done: make(chan struct{})}
		st.next = r
	}
	l.mu.Unlock()
	select {
	case <-r.done:
		return r.items, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *liveLister) startLocked(st *liveState, r *liveRound) {
	st.running = r
	liveLookups.Inc()
}

// run Lists for round r, then starts the next round, if callers joined it
// meanwhile, on a goroutine of its own. The List has its own timeout:
// callers that give up do not cancel it for the others.
func (l *liveLister) run(ns string, st *liveState, r *liveRound) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	var list stsbindv1.IAMRoleBindingList
	r.err = l.reader.List(ctx, &list, client.InNamespace(ns))
	cancel()
	r.items = list.Items
	l.mu.Lock()
	st.running = nil
	if next := st.next; next != nil {
		st.next = nil
		l.startLocked(st, next)
		go l.run(ns, st, next)
	} else {
		delete(l.keys, ns)
	}
	l.mu.Unlock()
	close(r.done)
}
