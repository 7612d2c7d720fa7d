package webhook

import (
	"context"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/index"
)

// liveLister asks the API server for the bindings of one ServiceAccount when
// the cache has none, and shares the answers. A call that arrives while a List
// for the same ServiceAccount is running joins the next List, which starts
// when the running one ends: every caller still gets an answer from a List
// that began after it arrived, which is what rules out the create race, but
// under load the API server sees about one List per ServiceAccount per List
// latency instead of one per pod.
type liveLister struct {
	reader  client.Reader
	timeout time.Duration

	mu   sync.Mutex
	keys map[liveKey]*liveState
}

type liveKey struct{ namespace, serviceAccount string }

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
	return &liveLister{reader: r, timeout: timeout, keys: map[liveKey]*liveState{}}
}

// list returns the bindings of sa in ns from a List that began after the call.
func (l *liveLister) list(ctx context.Context, ns, sa string) ([]stsbindv1.IAMRoleBinding, error) {
	k := liveKey{ns, sa}
	l.mu.Lock()
	st := l.keys[k]
	if st == nil {
		st = &liveState{}
		l.keys[k] = st
	}
	var r *liveRound
	switch {
	case st.running == nil:
		r = &liveRound{done: make(chan struct{})}
		l.startLocked(k, st, r)
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

// startLocked runs round r now; when it ends, the next round starts. The List
// has its own timeout: callers that give up do not cancel it for the others.
func (l *liveLister) startLocked(k liveKey, st *liveState, r *liveRound) {
	st.running = r
	liveLookups.Inc()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		var list stsbindv1.IAMRoleBindingList
		r.err = l.reader.List(ctx, &list, client.InNamespace(k.namespace), client.MatchingFields{index.ServiceAccountName: k.serviceAccount})
		cancel()
		r.items = list.Items
		l.mu.Lock()
		st.running = nil
		if next := st.next; next != nil {
			st.next = nil
			l.startLocked(k, st, next)
		} else {
			delete(l.keys, k)
		}
		l.mu.Unlock()
		close(r.done)
	}()
}
