package webhook

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/stsclient"
)

// soonReasons are Ready=False reasons the controller retries with backoff,
// expecting to succeed without anyone acting: a pod of such a binding waits
// for the first credentials, as it does for a binding not reconciled yet.
// The pod's own admission says its ServiceAccount exists, so
// ServiceAccountNotFound is about to clear.
var soonReasons = map[string]bool{
	stsbindv1.ReasonServiceAccountNotFound: true,
	stsbindv1.ReasonSTSUnreachable:         true,
	stsbindv1.ReasonTokenRequestFailed:     true,
	stsbindv1.ReasonTokenReviewFailed:      true,
	stsbindv1.ReasonSecretWriteFailed:      true,
	stsbindv1.ReasonExpiredOnArrival:       true,
}

// stuckReason is the reason of a binding that cannot issue credentials
// until someone acts (IAM refused, the provider does not allow the role, a
// Secret of that name belongs to someone else): Ready=False for its current
// spec with a reason that no backoff clears. Empty for every other binding:
// Ready, not reconciled yet, spec changed since the condition, or a passing
// fault.
//
// Pods of a stuck binding must not wait for a Secret that may never come, so
// its Secret volume is optional: kubelet starts the containers with an empty
// directory and fills it at its next sync of the pod once the Secret exists.
func stuckReason(b *stsbindv1.IAMRoleBinding) string {
	c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.ObservedGeneration != b.Generation {
		return ""
	}
	if soonReasons[c.Reason] || stsclient.TransientCodes[c.Reason] {
		return ""
	}
	return c.Reason
}
