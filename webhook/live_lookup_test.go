package webhook

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// gatedReader answers List with the bindings that exist when the List starts,
// and holds each List until released.
type gatedReader struct {
	client.Reader
	mu       sync.Mutex
	bindings []stsbindv1.IAMRoleBinding
	lists    atomic.Int32
	started  chan struct{}
	release  chan struct{}
}

func (g *gatedReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	g.mu.Lock()
	snapshot := append([]stsbindv1.IAMRoleBinding(nil), g.bindings...)
	g.mu.Unlock()
	g.lists.Add(1)
	g.started <- struct{}{}
	<-g.release
	list.(*stsbindv1.IAMRoleBindingList).Items = snapshot
	return nil
}

func (g *gatedReader) create(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.bindings = append(g.bindings, stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// TestLiveListerNeverAnswersFromAnOlderList: a caller that arrives while a
// List runs must not get that List's answer, which may predate a binding
// created just before the caller's pod.
func TestLiveListerNeverAnswersFromAnOlderList(t *testing.T) {
	t.Parallel()
	g := &gatedReader{started: make(chan struct{}, 10), release: make(chan struct{})}
	l := newLiveLister(g, 5*time.Second)
	ctx := context.Background()

	type answer struct {
		items []stsbindv1.IAMRoleBinding
		err   error
	}
	first := make(chan answer, 1)
	go func() { items, err := l.list(ctx, "ns"); first <- answer{items, err} }()
	<-g.started // List #1 runs and saw no binding

	g.create("just-created")
	const late = 20
	lateAnswers := make(chan answer, late)
	for range late {
		go func() { items, err := l.list(ctx, "ns"); lateAnswers <- answer{items, err} }()
	}
	// Let all of them join before List #1 ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		joined := l.keys["ns"].next != nil
		l.mu.Unlock()
		if joined || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the other goroutines join the same round
	g.release <- struct{}{}
	if a := <-first; a.err != nil || len(a.items) != 0 {
		t.Fatalf("first caller: %v, %d bindings; its List started before the binding existed", a.err, len(a.items))
	}
	<-g.started // List #2, for the late callers
	g.release <- struct{}{}
	for range late {
		a := <-lateAnswers
		if a.err != nil || len(a.items) != 1 {
			t.Fatalf("a late caller got %d bindings (%v): answered from a List older than its request", len(a.items), a.err)
		}
	}
	if n := g.lists.Load(); n != 2 {
		t.Errorf("%d Lists for 21 callers, want 2", n)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.keys) != 0 {
		t.Errorf("state left behind: %d keys", len(l.keys))
	}
}

// TestLiveListerCallerGivesUp: a caller waiting for the next List may give
// up; that List still runs for the others and the state is cleared after.
func TestLiveListerCallerGivesUp(t *testing.T) {
	t.Parallel()
	g := &gatedReader{started: make(chan struct{}, 10), release: make(chan struct{})}
	l := newLiveLister(g, 5*time.Second)
	first := make(chan error, 1)
	go func() { _, err := l.list(context.Background(), "ns"); first <- err }()
	<-g.started // List #1 runs

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := l.list(ctx, "ns"); errc <- err }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		joined := l.keys["ns"].next != nil
		l.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second caller never joined the next List")
		}
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a caller that gave up got an answer")
	}
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The List the second caller joined runs without it and ends cleanly.
	<-g.started
	g.release <- struct{}{}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		left := len(l.keys)
		l.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state left behind: %d keys", left)
		}
	}
	// The next caller starts anew.
	g.create("b")
	done := make(chan int, 1)
	go func() {
		items, err := l.list(context.Background(), "ns")
		if err != nil {
			t.Error(err)
		}
		done <- len(items)
	}()
	<-g.started
	g.release <- struct{}{}
	if n := <-done; n != 1 {
		t.Errorf("next caller got %d bindings, want 1", n)
	}
}
