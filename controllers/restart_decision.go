package controllers

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// credentialsIDLength is how many hex digits of the Secret's data hash
// identify its credentials in status and in the pod template annotation.
const credentialsIDLength = 16

// credentialsID identifies the credentials of a Secret by its data hash:
// new keys always give a new hash, an unchanged Secret the same one.
func credentialsID(dataHash string) string {
	if len(dataHash) > credentialsIDLength {
		return dataHash[:credentialsIDLength]
	}
	return dataHash
}

// restartStep is what a reconcile of a binding with restartOnRotation does.
type restartStep int

const (
	// restartNothing: the credentials were handled already; nothing is read
	// beyond the cache and nothing is written.
	restartNothing restartStep = iota
	// restartBaseline: the first credentials seen; recorded, nothing restarted.
	// The pods started with them (kubelet does not start a container whose
	// secretKeyRef names a missing Secret).
	restartBaseline
	// restartRound: the credentials rotated; every workload whose pods hold
	// the binding's credentials is restarted (or waits).
	restartRound
	// restartPending: a workload's wait is over; only those are restarted.
	restartPending
)

func (s restartStep) String() string {
	return [...]string{"nothing", "baseline", "round", "pending"}[s]
}

// restartInput is what decides the step: the Secret's credentials and the
// last round's record.
type restartInput struct {
	// Credentials identifies the Secret's credentials; "" when there is no
	// Secret of the binding's.
	Credentials string
	Last        *stsbindv1.RestartStatus
	Now         time.Time
}

// decideRestartStep decides from the Secret and the status alone, so that a
// controller restart over unchanged credentials reads no pod and writes no
// workload. wakeAt is when a waiting workload is due (zero: none waits).
func decideRestartStep(in restartInput) (step restartStep, wakeAt time.Time) {
	switch {
	case in.Credentials == "":
		return restartNothing, time.Time{}
	case in.Last == nil || in.Last.Credentials == "":
		return restartBaseline, time.Time{}
	case in.Last.Credentials != in.Credentials:
		return restartRound, time.Time{}
	}
	for _, w := range in.Last.Workloads {
		if w.NextRestartTime == nil {
			continue
		}
		if !w.NextRestartTime.After(in.Now) {
			return restartPending, time.Time{}
		}
		if wakeAt.IsZero() || w.NextRestartTime.Time.Before(wakeAt) {
			wakeAt = w.NextRestartTime.Time
		}
	}
	return restartNothing, wakeAt
}

// credentialControllerBusy tells whether the credential controller has
// written new credentials but not yet their status (status.expiration is
// the Secret's once it has). It is waited for, for a few seconds at most:
// the round writes the binding's status too.
func credentialControllerBusy(b *stsbindv1.IAMRoleBinding, expiration, issuedAt, now time.Time) bool {
	recorded := b.Status.Expiration != nil && b.Status.Expiration.Time.Equal(expiration)
	return !recorded && !issuedAt.IsZero() && now.Sub(issuedAt) < 10*time.Second
}

// workloadInput is what decides one workload's restart.
type workloadInput struct {
	// Annotation is its pod template's restart.stsbind.dev/<binding> value.
	Annotation  string
	Credentials string
	// Prev is its entry of the last round; nil when it is new.
	Prev *stsbindv1.WorkloadRestart
	// HeldExpiration is when the credentials its pods hold expire: those of
	// the last round. Zero when unknown.
	HeldExpiration time.Time
	// Round is true in a new round, false for a pending workload.
	Round       bool
	Now         time.Time
	MinInterval time.Duration
}

// workloadAction: restart now, wait until WaitUntil, or neither (its
// template already carries the credentials).
type workloadAction struct {
	Restart   bool
	WaitUntil time.Time
}

// decideWorkload rate-limits one workload's restarts: at most one per
// MinInterval, but a wait never ends later than halfway from now to the
// expiry of the credentials its pods hold, so that the rollout has the other
// half to finish, nor later than a wait already promised.
func decideWorkload(in workloadInput) workloadAction {
	if in.Annotation == in.Credentials {
		return workloadAction{}
	}
	var promised time.Time
	if in.Prev != nil && in.Prev.NextRestartTime != nil {
		promised = in.Prev.NextRestartTime.Time
	}
	if !in.Round {
		if !promised.IsZero() && promised.After(in.Now) {
			return workloadAction{WaitUntil: promised}
		}
		return workloadAction{Restart: true}
	}
	if in.Prev == nil || in.Prev.LastRestartTime == nil {
		return workloadAction{Restart: true}
	}
	at := in.Prev.LastRestartTime.Add(in.MinInterval)
	deadline := in.Now
	if in.HeldExpiration.After(in.Now) {
		deadline = in.Now.Add(in.HeldExpiration.Sub(in.Now) / 2)
	}
	if deadline.Before(at) {
		at = deadline
	}
	if !promised.IsZero() && promised.Before(at) {
		at = promised
	}
	if !at.After(in.Now) {
		return workloadAction{Restart: true}
	}
	return workloadAction{WaitUntil: at}
}

// readsSecret tells whether a container of the pod takes environment
// variables from the Secret: the values it started with are the ones it has.
func readsSecret(pod *corev1.Pod, secret string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret {
					return true
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil && e.SecretRef.Name == secret {
					return true
				}
			}
		}
	}
	return false
}

// holdsCredentials tells whether the pod still runs with what it read at
// start: not finished, not being deleted.
func holdsCredentials(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp.IsZero() && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// ineffective says why changing the workload's pod template restarts no
// pod; empty when it does.
func ineffective(obj any) string {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		if w.Spec.Paused {
			return "it is paused: its pods are replaced when it is resumed"
		}
	case *appsv1.StatefulSet:
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			return "its updateStrategy is OnDelete: its pods are replaced only when deleted"
		}
	case *appsv1.DaemonSet:
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			return "its updateStrategy is OnDelete: its pods are replaced only when deleted"
		}
	}
	return ""
}
