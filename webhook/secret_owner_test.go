package webhook

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// secretValue is the data of the tests' Secrets: no event may show it.
const secretValue = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

// ownedSecret is b's Secret as the controller writes it: labelled, with a
// controller owner reference to b (which must have a UID).
func ownedSecret(b *stsbindv1.IAMRoleBinding) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       b.Namespace,
			Name:            b.SecretNameOrDefault(),
			Labels:          map[string]string{stsbindv1.LabelManagedBy: stsbindv1.LabelManagedByValue, stsbindv1.LabelBinding: b.Name},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(b, stsbindv1.GroupVersion.WithKind("IAMRoleBinding"))},
		},
		Type: stsbindv1.SecretType,
		Data: map[string][]byte{credentials.KeySecretAccessKey: []byte(secretValue)},
	}
}

// foreignSecret is a Secret nobody's binding controls, unlabelled.
func foreignSecret(ns, name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{credentials.KeySecretAccessKey: []byte(secretValue)},
	}
}

func TestUsableBindings(t *testing.T) {
	t.Parallel()
	binding := func(name, uid, secret string) stsbindv1.IAMRoleBinding {
		b := newBinding("team-a", name, "app", stsbindv1.InjectionFiles)
		b.UID, b.Spec.SecretName = types.UID(uid), secret
		return *b
	}
	a, b := binding("a", "uid-a", ""), binding("b", "uid-b", "")
	stealsA := binding("b", "uid-b", "a")
	meta := func(s *corev1.Secret) *metav1.ObjectMeta { return &s.ObjectMeta }
	recreatedA := binding("a", "uid-a-old", "")
	notController := ownedSecret(&b)
	notController.OwnerReferences[0].Controller = nil

	tests := map[string]struct {
		bindings    []stsbindv1.IAMRoleBinding
		secrets     map[string]*metav1.ObjectMeta
		wantUsable  []string
		wantRefused []string
	}{
		"no Secrets yet":                  {bindings: []stsbindv1.IAMRoleBinding{a, b}, wantUsable: []string{"a", "b"}},
		"Secrets looked up and not found": {bindings: []stsbindv1.IAMRoleBinding{a, b}, secrets: map[string]*metav1.ObjectMeta{"a": nil, "b": nil}, wantUsable: []string{"a", "b"}},
		"own Secrets": {
			bindings:   []stsbindv1.IAMRoleBinding{a, b},
			secrets:    map[string]*metav1.ObjectMeta{"a": meta(ownedSecret(&a)), "b": meta(ownedSecret(&b))},
			wantUsable: []string{"a", "b"},
		},
		"Secret of another binding": {
			bindings:    []stsbindv1.IAMRoleBinding{a, stealsA},
			secrets:     map[string]*metav1.ObjectMeta{"a": meta(ownedSecret(&a))},
			wantUsable:  []string{"a"},
			wantRefused: []string{"b"},
		},
		"Secret of another binding, the refused one alone": {
			bindings:    []stsbindv1.IAMRoleBinding{stealsA},
			secrets:     map[string]*metav1.ObjectMeta{"a": meta(ownedSecret(&a))},
			wantUsable:  []string{},
			wantRefused: []string{"b"},
		},
		"foreign Secret without owner": {
			bindings:    []stsbindv1.IAMRoleBinding{a, b},
			secrets:     map[string]*metav1.ObjectMeta{"a": meta(foreignSecret("team-a", "a")), "b": nil},
			wantUsable:  []string{"b"},
			wantRefused: []string{"a"},
		},
		"owner reference that is not the controller": {
			bindings:    []stsbindv1.IAMRoleBinding{b},
			secrets:     map[string]*metav1.ObjectMeta{"b": meta(notController)},
			wantUsable:  []string{},
			wantRefused: []string{"b"},
		},
		"Secret of an earlier binding of the same name": {
			bindings:    []stsbindv1.IAMRoleBinding{a},
			secrets:     map[string]*metav1.ObjectMeta{"a": meta(ownedSecret(&recreatedA))},
			wantUsable:  []string{},
			wantRefused: []string{"a"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			usable, refused := usableBindings(tc.bindings, tc.secrets)
			gotUsable := []string{}
			for _, b := range usable {
				gotUsable = append(gotUsable, b.Name)
			}
			var gotRefused []string
			for _, b := range refused {
				gotRefused = append(gotRefused, b.Name)
			}
			if diff := cmp.Diff(tc.wantUsable, gotUsable); diff != "" {
				t.Errorf("usable (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRefused, gotRefused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
		})
	}
}

// countingReader counts the requests that reach the API server.
type countingReader struct {
	client.Reader
	gets, lists int
}

func (r *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.gets++
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists++
	return r.Reader.List(ctx, list, opts...)
}

// failingGets stands for an API server that lists but cannot get.
type failingGets struct{ client.Reader }

func (failingGets) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("connection refused")
}

// TestDefaultChecksSecretOwner runs the defaulter over a fake cache (holding
// only labelled Secrets, as the manager's does) and a fake API server, which
// holds the bindings, and counts the requests the API server sees: the one
// List of the pod's bindings, and the Secret reads.
func TestDefaultChecksSecretOwner(t *testing.T) {
	t.Parallel()
	mine := newBinding("team-a", "s3-reader", "app", stsbindv1.InjectionEnv)
	mine.UID = "uid-mine"
	other := newBinding("team-a", "other", "other-sa", stsbindv1.InjectionFiles)
	other.UID = "uid-other"
	stealing := mine.DeepCopy()
	stealing.Spec.SecretName = other.Name
	ourUnlabelled := ownedSecret(mine)
	ourUnlabelled.Labels = nil

	tests := map[string]struct {
		binding  *stsbindv1.IAMRoleBinding
		cached   []client.Object // besides the binding
		api      []client.Object // Secrets outside the cache
		apiDown  bool            // the API server answers Lists but no GET
		policy   admissionregistrationv1.FailurePolicyType
		wantUsed bool
		wantErr  bool
		// wantEvent is the reason of the one event wanted, "" for none.
		wantEvent string
		wantGets  int
	}{
		"own Secret in the cache: used, no Secret read": {
			binding: mine, cached: []client.Object{ownedSecret(mine)}, apiDown: true, wantUsed: true,
		},
		"another binding's Secret in the cache: refused, no Secret read": {
			binding: stealing, cached: []client.Object{other, ownedSecret(other)}, apiDown: true,
			wantEvent: stsbindv1.ReasonSecretConflict,
		},
		"no Secret yet: one metadata read, used": {
			binding: mine, wantUsed: true, wantGets: 1,
		},
		"foreign Secret outside the cache: one metadata read, refused": {
			binding: mine, api: []client.Object{foreignSecret("team-a", mine.Name)},
			wantEvent: stsbindv1.ReasonSecretConflict, wantGets: 1,
		},
		"own Secret that lost its label: one metadata read, used": {
			binding: mine, api: []client.Object{ourUnlabelled}, wantUsed: true, wantGets: 1,
		},
		"Secret read fails, policy Ignore: admitted unchanged": {
			binding: mine, apiDown: true, policy: admissionregistrationv1.Ignore,
			wantEvent: ReasonInjectionSkipped, wantGets: 1,
		},
		"Secret read fails, policy Fail: denied": {
			binding: mine, apiDown: true, policy: admissionregistrationv1.Fail, wantErr: true, wantGets: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var objs []client.Object
			for _, o := range append(append([]client.Object{tc.binding}, tc.cached...), tc.api...) {
				if _, isSecret := o.(*corev1.Secret); !isSecret || slices.Contains(tc.api, o) {
					objs = append(objs, o)
				}
			}
			api := &countingReader{Reader: emptyCache(t, objs...)}
			if tc.apiDown {
				api.Reader = failingGets{api.Reader}
			}
			rec := events.NewFakeRecorder(10)
			d := &PodDefaulter{
				Cache:         emptyCache(t, append([]client.Object{tc.binding}, tc.cached...)...),
				APIReader:     api,
				Recorder:      rec,
				FailurePolicy: tc.policy,
				Options:       fixtureOptions,
			}
			pod := newPod("team-a", "app", "app")
			want := pod.DeepCopy()
			if tc.wantUsed {
				mutatePod(want, []stsbindv1.IAMRoleBinding{*tc.binding}, fixtureOptions)
			}
			policy := string(tc.policy)
			if policy == "" {
				policy = string(admissionregistrationv1.Ignore)
			}
			failures := testutil.ToFloat64(lookupFailures.WithLabelValues(policy))

			err := d.Default(context.Background(), pod)
			if tc.wantErr {
				if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "Secret "+mine.Name) {
					t.Errorf("Default() error = %v, want ServiceUnavailable naming the Secret", err)
				}
			} else if err != nil {
				t.Fatalf("Default() error = %v", err)
			}
			if diff := cmp.Diff(want, pod); diff != "" {
				t.Errorf("pod (-want +got):\n%s", diff)
			}
			if api.gets != tc.wantGets || api.lists != 1 {
				t.Errorf("API server saw %d GETs and %d LISTs, want %d and 1", api.gets, api.lists, tc.wantGets)
			}
			failed := tc.wantErr || tc.wantEvent == ReasonInjectionSkipped
			if grew := testutil.ToFloat64(lookupFailures.WithLabelValues(policy)) - failures; failed != (grew > 0) {
				t.Errorf("lookup failures grew by %v; want growth: %v", grew, failed)
			}
			var got []string
			for len(rec.Events) > 0 {
				got = append(got, <-rec.Events)
			}
			switch {
			case tc.wantEvent == "" && len(got) > 0:
				t.Errorf("events %q, want none", got)
			case tc.wantEvent != "" && (len(got) != 1 || !strings.HasPrefix(got[0], "Warning "+tc.wantEvent+" ")):
				t.Errorf("events %q, want one Warning %s", got, tc.wantEvent)
			case tc.wantEvent == stsbindv1.ReasonSecretConflict:
				checkRefusalNote(t, got[0], tc.binding)
			}
		})
	}
}

// checkRefusalNote: the note names the binding and its Secret, says why, and
// shows nothing of the Secret's data.
func checkRefusalNote(t *testing.T, note string, b *stsbindv1.IAMRoleBinding) {
	t.Helper()
	for _, want := range []string{"IAMRoleBinding " + b.Name + ":", "Secret " + b.SecretNameOrDefault() + " ", "belongs to someone else"} {
		if !strings.Contains(note, want) {
			t.Errorf("event %q does not contain %q", note, want)
		}
	}
	if strings.Contains(note, secretValue) {
		t.Errorf("event %q shows the Secret's data", note)
	}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	needEnv(t)
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
}

// admitted creates the pod through the API server, and so the webhook, and
// returns the stored pod.
func admitted(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	create(t, pod)
	var stored corev1.Pod
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored); err != nil {
		t.Fatal(err)
	}
	return &stored
}

// waitForRefusal returns the note of the Warning event that the pod of
// ServiceAccount sa got nothing from binding.
func waitForRefusal(t *testing.T, ns, sa, binding string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == stsbindv1.ReasonSecretConflict &&
				e.Regarding.Kind == "ServiceAccount" && e.Regarding.Name == sa && strings.Contains(e.Note, "IAMRoleBinding "+binding+":") {
				return e.Note
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Warning %s event about IAMRoleBinding %s on ServiceAccount %s; events: %+v", stsbindv1.ReasonSecretConflict, binding, sa, list.Items)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebhookRefusesAnotherBindingsSecret is the attack: a tenant's binding
// for its own ServiceAccount names the Secret of a binding for another one.
// Its pods get nothing from that binding, but still get their other binding,
// which becomes the default; the victim's pods keep their credentials.
func TestWebhookRefusesAnotherBindingsSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	victim := newBinding(ns, "victim-role", "victim", stsbindv1.InjectionFiles)
	create(t, victim) // now with its UID
	secret := ownedSecret(victim)
	create(t, secret)
	// The stealing binding sorts first: without the check it would be the default.
	steal := newBinding(ns, "aaa-steal", "mine", stsbindv1.InjectionEnv)
	steal.Spec.SecretName = secret.Name
	own := newBinding(ns, "zzz-own", "mine", stsbindv1.InjectionFiles) // its Secret does not exist yet
	create(t, steal, own)
	// Once the cache holds the victim's Secret the refusal needs no API request
	// (TestWebhookRefusesForeignSecret covers the uncached read).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the victim's Secret never reached the cache: %v", err)
		}
	}

	for sa, bindings := range map[string][]stsbindv1.IAMRoleBinding{"mine": {*own}, "victim": {*victim}} {
		pod := newPod(ns, "pod-"+sa, sa)
		want := pod.DeepCopy()
		mutatePod(want, bindings, fixtureOptions)
		if diff := cmp.Diff(injectedPart(want), injectedPart(admitted(t, pod))); diff != "" {
			t.Errorf("stored pod of ServiceAccount %s (-want +got):\n%s", sa, diff)
		}
	}
	checkRefusalNote(t, waitForRefusal(t, ns, "mine", steal.Name), steal)
}

// TestWebhookInjectsBindingWhoseSecretDoesNotExistYet: the controller (none
// runs here) has not written the Secret yet; the pod still gets the binding
// and mounts the Secret once it is there.
func TestWebhookInjectsBindingWhoseSecretDoesNotExistYet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	b := newBinding(ns, "s3-reader", "app", stsbindv1.InjectionFiles)
	create(t, b)
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: b.SecretNameOrDefault()}, &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
	})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("Secret lookup error = %v, want NotFound: the test is wrong", err)
	}
	pod := newPod(ns, "app", "app")
	want := pod.DeepCopy()
	mutatePod(want, []stsbindv1.IAMRoleBinding{*b}, fixtureOptions)
	if diff := cmp.Diff(injectedPart(want), injectedPart(admitted(t, pod))); diff != "" {
		t.Errorf("stored pod (-want +got):\n%s", diff)
	}
}

// TestWebhookRefusesForeignSecret: an unlabelled Secret nobody's binding
// controls, which the cache never holds, is found by the live read and refused.
func TestWebhookRefusesForeignSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	secret := foreignSecret(ns, "s3-reader")
	create(t, secret)
	b := newBinding(ns, "s3-reader", "app", stsbindv1.InjectionEnv)
	create(t, b)
	if err := mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("cache lookup of the foreign Secret: %v, want NotFound: the test is wrong", err)
	}
	stored := admitted(t, newPod(ns, "app", "app"))
	if diff := cmp.Diff(injectedPart(newPod(ns, "app", "app")), injectedPart(stored)); diff != "" {
		t.Errorf("pod got credentials from a foreign Secret (-want +got):\n%s", diff)
	}
	checkRefusalNote(t, waitForRefusal(t, ns, "app", b.Name), b)
}

// BenchmarkSecretsOf is the per-pod cost of the Secret ownership check: a
// Secret in the cache, and the metadata-only GET that a Secret outside the
// cache costs (not created yet, or foreign), against the envtest API server.
func BenchmarkSecretsOf(b *testing.B) {
	ctx := context.Background()
	ns := newNamespace(b)
	cached := newBinding(ns, "cached", "app", stsbindv1.InjectionFiles)
	missing := newBinding(ns, "missing", "app", stsbindv1.InjectionFiles)
	for _, o := range []client.Object{cached, missing} {
		if err := env.Client.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	secret := ownedSecret(cached)
	if err := env.Client.Create(ctx, secret); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}) != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("Secret never reached the cache")
		}
	}
	d := &PodDefaulter{Cache: mgr.GetCache(), APIReader: mgr.GetAPIReader()}
	pod := newPod(ns, "app", "app")
	for name, binding := range map[string]*stsbindv1.IAMRoleBinding{"cache-hit": cached, "cache-miss-live-get": missing} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			bindings := []stsbindv1.IAMRoleBinding{*binding}
			for b.Loop() {
				if _, err := d.secretsOf(ctx, ns, pod, bindings); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
