package webhook

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func TestStuckReason(t *testing.T) {
	t.Parallel()
	ready := func(status metav1.ConditionStatus, reason string, observed int64) []metav1.Condition {
		return []metav1.Condition{{Type: stsbindv1.ConditionReady, Status: status, Reason: reason, ObservedGeneration: observed}}
	}
	tests := map[string]struct {
		conditions []metav1.Condition
		want       string
	}{
		"not reconciled yet":              {want: ""},
		"ready":                           {conditions: ready(metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued, 2), want: ""},
		"ready, refresh retrying":         {conditions: ready(metav1.ConditionTrue, stsbindv1.ReasonRefreshRetrying, 2), want: ""},
		"access denied":                   {conditions: ready(metav1.ConditionFalse, "AccessDenied", 2), want: "AccessDenied"},
		"MinIO refused the role":          {conditions: ready(metav1.ConditionFalse, "InvalidParameterValue", 2), want: "InvalidParameterValue"},
		"role not allowed":                {conditions: ready(metav1.ConditionFalse, stsbindv1.ReasonRoleNotAllowed, 2), want: stsbindv1.ReasonRoleNotAllowed},
		"secret conflict":                 {conditions: ready(metav1.ConditionFalse, stsbindv1.ReasonSecretConflict, 2), want: stsbindv1.ReasonSecretConflict},
		"unknown STS code":                {conditions: ready(metav1.ConditionFalse, "SomethingNew", 2), want: "SomethingNew"},
		"fault of an older spec":          {conditions: ready(metav1.ConditionFalse, "AccessDenied", 1), want: ""},
		"throttled":                       {conditions: ready(metav1.ConditionFalse, "Throttling", 2), want: ""},
		"STS unreachable":                 {conditions: ready(metav1.ConditionFalse, stsbindv1.ReasonSTSUnreachable, 2), want: ""},
		"ServiceAccount about to show up": {conditions: ready(metav1.ConditionFalse, stsbindv1.ReasonServiceAccountNotFound, 2), want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := &stsbindv1.IAMRoleBinding{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Status: stsbindv1.IAMRoleBindingStatus{Conditions: tc.conditions}}
			if got := stuckReason(b); got != tc.want {
				t.Errorf("stuckReason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMayYieldAWSNames(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{"": true, "A": true, "AWS": true, "AWS_": true, "AWS_X_": true, "APP_": false, "aws_": false, "X": false}
	for prefix, want := range tests {
		t.Run(prefix, func(t *testing.T) {
			t.Parallel()
			if got := mayYieldAWSNames(prefix); got != want {
				t.Errorf("mayYieldAWSNames(%q) = %v, want %v", prefix, got, want)
			}
		})
	}
}
