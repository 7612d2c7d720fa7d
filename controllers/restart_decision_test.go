package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func mt(t time.Time) *metav1.Time { return ptr.To(metav1.NewTime(t)) }

func TestDecideRestartStep(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	status := func(creds string, waits ...time.Time) *stsbindv1.RestartStatus {
		st := &stsbindv1.RestartStatus{Credentials: creds, Expiration: mt(now.Add(40 * time.Minute))}
		st.Workloads = append(st.Workloads, stsbindv1.WorkloadRestart{Kind: "Deployment", Name: "current", Credentials: creds})
		for i, w := range waits {
			st.Workloads = append(st.Workloads, stsbindv1.WorkloadRestart{Kind: "Deployment", Name: string(rune('a' + i)), NextRestartTime: mt(w)})
		}
		return st
	}
	tests := map[string]struct {
		in       restartInput
		wantStep restartStep
		wantWake time.Time
	}{
		"no Secret of the binding's": {
			in: restartInput{Last: status("aaaa"), Now: now}, wantStep: restartNothing,
		},
		"first credentials seen: recorded, nothing restarted": {
			in: restartInput{Credentials: "aaaa", Now: now}, wantStep: restartBaseline,
		},
		"a status without credentials is a first sight too": {
			in: restartInput{Credentials: "aaaa", Last: &stsbindv1.RestartStatus{}, Now: now}, wantStep: restartBaseline,
		},
		// An operator restart over a Secret that did not change: the
		// status says these credentials were handled.
		"same credentials as the last round": {
			in: restartInput{Credentials: "aaaa", Last: status("aaaa"), Now: now}, wantStep: restartNothing,
		},
		"rotated": {
			in: restartInput{Credentials: "bbbb", Last: status("aaaa"), Now: now}, wantStep: restartRound,
		},
		// Two rotations before the first wait ended: the new round takes
		// over (it keeps the promised time, see TestDecideWorkload).
		"rotated while a workload waits": {
			in:       restartInput{Credentials: "cccc", Last: status("bbbb", now.Add(time.Minute)), Now: now},
			wantStep: restartRound,
		},
		"a wait in the future: wake then": {
			in:       restartInput{Credentials: "aaaa", Last: status("aaaa", now.Add(3*time.Minute), now.Add(time.Minute)), Now: now},
			wantStep: restartNothing, wantWake: now.Add(time.Minute),
		},
		"a wait that is over": {
			in:       restartInput{Credentials: "aaaa", Last: status("aaaa", now.Add(3*time.Minute), now), Now: now},
			wantStep: restartPending,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			step, wake := decideRestartStep(tc.in)
			if step != tc.wantStep || !wake.Equal(tc.wantWake) {
				t.Errorf("got %s, wake %v; want %s, wake %v", step, wake, tc.wantStep, tc.wantWake)
			}
		})
	}
}

func TestDecideWorkload(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const minInterval = 5 * time.Minute
	restarted := func(ago time.Duration) *stsbindv1.WorkloadRestart {
		return &stsbindv1.WorkloadRestart{Kind: "Deployment", Name: "web", Credentials: "bbbb", LastRestartTime: mt(now.Add(-ago))}
	}
	waiting := func(ago time.Duration, until time.Time) *stsbindv1.WorkloadRestart {
		w := restarted(ago)
		w.NextRestartTime = mt(until)
		return w
	}
	held := now.Add(20 * time.Minute) // the default refresh: a third of 1h before expiry
	tests := map[string]struct {
		in   workloadInput
		want workloadAction
	}{
		"template carries the credentials: nothing (a repeated round writes nothing)": {
			in: workloadInput{Annotation: "cccc", Credentials: "cccc", Prev: restarted(time.Second), Round: true},
		},
		"never restarted: now": {
			in:   workloadInput{Credentials: "cccc", Round: true, HeldExpiration: held},
			want: workloadAction{Restart: true},
		},
		"an annotation from elsewhere (kubectl, a copy) is not the credentials: now": {
			in:   workloadInput{Annotation: "2026-12-02T09:00:00Z", Credentials: "cccc", Round: true, HeldExpiration: held},
			want: workloadAction{Restart: true},
		},
		"restarted longer ago than the interval: now": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: restarted(6 * time.Minute), Round: true, HeldExpiration: held},
			want: workloadAction{Restart: true},
		},
		// VSO #1228: two rotations in one second. The second is not
		// skipped (the values differ), it waits for the interval.
		"restarted a second ago: waits for the interval": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: restarted(time.Second), Round: true, HeldExpiration: held},
			want: workloadAction{WaitUntil: now.Add(minInterval - time.Second)},
		},
		"the held credentials expire soon: the wait ends halfway to their expiry": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: restarted(time.Second), Round: true, HeldExpiration: now.Add(4 * time.Minute)},
			want: workloadAction{WaitUntil: now.Add(2 * time.Minute)},
		},
		"the held credentials expired: now": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: restarted(time.Second), Round: true, HeldExpiration: now.Add(-time.Second)},
			want: workloadAction{Restart: true},
		},
		"their expiry unknown: now": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: restarted(time.Second), Round: true},
			want: workloadAction{Restart: true},
		},
		"a new round keeps an earlier promise": {
			in: workloadInput{Annotation: "aaaa", Credentials: "cccc", Prev: waiting(time.Minute, now.Add(30*time.Second)),
				Round: true, HeldExpiration: held},
			want: workloadAction{WaitUntil: now.Add(30 * time.Second)},
		},
		"a failed restart is retried in the next round at once": {
			in: workloadInput{Annotation: "aaaa", Credentials: "cccc", Prev: &stsbindv1.WorkloadRestart{NextRestartTime: mt(now)},
				Round: true, HeldExpiration: held},
			want: workloadAction{Restart: true},
		},
		"pending, due: now": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: waiting(5*time.Minute, now)},
			want: workloadAction{Restart: true},
		},
		"pending, not yet due: keeps waiting": {
			in:   workloadInput{Annotation: "bbbb", Credentials: "cccc", Prev: waiting(time.Minute, now.Add(time.Minute))},
			want: workloadAction{WaitUntil: now.Add(time.Minute)},
		},
		"pending, but someone else rolled it to these credentials: nothing": {
			in: workloadInput{Annotation: "cccc", Credentials: "cccc", Prev: waiting(5*time.Minute, now)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := tc.in
			in.Now, in.MinInterval = now, minInterval
			if diff := cmp.Diff(tc.want, decideWorkload(in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestRestartWaitNeverPassesHalfTheHeldLifetime: whatever the interval and
// the times, a wait ends before the held credentials expire, with at least
// as much time left for the rollout as was spent waiting.
func TestRestartWaitNeverPassesHalfTheHeldLifetime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, interval := range []time.Duration{time.Second, 5 * time.Minute, time.Hour, 24 * time.Hour} {
		for _, ago := range []time.Duration{0, time.Second, time.Minute, 10 * time.Minute} {
			for _, left := range []time.Duration{time.Second, time.Minute, 20 * time.Minute, 11 * time.Hour} {
				a := decideWorkload(workloadInput{
					Annotation: "old", Credentials: "new", Round: true, Now: now, MinInterval: interval, HeldExpiration: now.Add(left),
					Prev: &stsbindv1.WorkloadRestart{LastRestartTime: mt(now.Add(-ago))},
				})
				if a.Restart {
					continue
				}
				if a.WaitUntil.IsZero() || a.WaitUntil.Sub(now) > left/2 || a.WaitUntil.After(now.Add(-ago).Add(interval)) {
					t.Errorf("interval %s, restarted %s ago, %s left: waits until %s", interval, ago, left, a.WaitUntil.Sub(now))
				}
			}
		}
	}
}

func TestReadsSecret(t *testing.T) {
	t.Parallel()
	ref := func(name string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "AWS_ACCESS_KEY_ID"}}
	}
	tests := map[string]struct {
		spec corev1.PodSpec
		want bool
	}{
		"secretKeyRef, as the webhook writes it": {
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "AWS_ACCESS_KEY_ID", ValueFrom: ref("creds")}}}}},
			want: true,
		},
		"in an init container": {
			spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init", Env: []corev1.EnvVar{{Name: "X", ValueFrom: ref("creds")}}}}},
			want: true,
		},
		"envFrom the Secret": {
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}},
			want: true,
		},
		"another Secret": {
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "AWS_ACCESS_KEY_ID", ValueFrom: ref("other")}}}}},
		},
		// Files mode: the SDK re-reads the mounted files; no restart.
		"mounted as a volume only": {
			spec: corev1.PodSpec{
				Volumes:    []corev1.Volume{{Name: "stsbind-creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}},
				Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "AWS_CONFIG_FILE", Value: "/var/run/secrets/stsbind.dev/creds/config"}}}},
			},
		},
		"a plain value named like the Secret": {
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "creds", Value: "creds"}}}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := readsSecret(&corev1.Pod{Spec: tc.spec}, "creds"); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIneffective(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		obj  any
		want bool
	}{
		"Deployment":                 {obj: &appsv1.Deployment{}},
		"paused Deployment":          {obj: &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Paused: true}}, want: true},
		"StatefulSet, RollingUpdate": {obj: &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType}}}},
		"StatefulSet, OnDelete":      {obj: &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}}}, want: true},
		"DaemonSet, default":         {obj: &appsv1.DaemonSet{}},
		"DaemonSet, OnDelete":        {obj: &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}}}, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := ineffective(tc.obj) != ""; got != tc.want {
				t.Errorf("got %v (%q), want %v", got, ineffective(tc.obj), tc.want)
			}
		})
	}
}

func TestCredentialsID(t *testing.T) {
	t.Parallel()
	a := credentialsID("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if a != "0123456789abcdef" {
		t.Errorf("got %q", a)
	}
	if credentialsID("") != "" {
		t.Error("an empty hash must give no identity (no Secret: nothing to do)")
	}
}

func TestCredentialControllerBusy(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	withStatus := func(e *time.Time) *stsbindv1.IAMRoleBinding {
		b := &stsbindv1.IAMRoleBinding{}
		if e != nil {
			b.Status.Expiration = mt(*e)
		}
		return b
	}
	earlier := now.Add(40 * time.Minute)
	tests := map[string]struct {
		b        *stsbindv1.IAMRoleBinding
		issuedAt time.Time
		want     bool
	}{
		"status records the Secret's credentials":        {b: withStatus(&exp), issuedAt: now, want: false},
		"status still has the replaced credentials":      {b: withStatus(&earlier), issuedAt: now.Add(-time.Second), want: true},
		"no status yet, Secret just written":             {b: withStatus(nil), issuedAt: now, want: true},
		"status never caught up: not waited for forever": {b: withStatus(&earlier), issuedAt: now.Add(-10 * time.Second), want: false},
		"no issue time on the Secret":                    {b: withStatus(&earlier), want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := credentialControllerBusy(tc.b, exp, tc.issuedAt, now); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestServingAccounts(t *testing.T) {
	t.Parallel()
	spec := func(sa string) stsbindv1.IAMRoleBindingSpec {
		return stsbindv1.IAMRoleBindingSpec{ServiceAccountName: sa}
	}
	tests := map[string]struct {
		b    stsbindv1.IAMRoleBinding
		want []string
	}{
		"spec only": {b: stsbindv1.IAMRoleBinding{Spec: spec("app")}, want: []string{"app"}},
		"served is the spec": {b: stsbindv1.IAMRoleBinding{Spec: spec("app"),
			Status: stsbindv1.IAMRoleBindingStatus{ServedSpec: ptr.To(spec("app"))}}, want: []string{"app"}},
		// A refused change of serviceAccountName: the Secret still holds
		// the old account's credentials, which its pods hold.
		"a refused change serves the old account": {b: stsbindv1.IAMRoleBinding{Spec: spec("new"),
			Status: stsbindv1.IAMRoleBindingStatus{ServedSpec: ptr.To(spec("old"))}}, want: []string{"new", "old"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, servingAccounts(&tc.b)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
