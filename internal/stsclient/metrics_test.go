package stsclient

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
)

// TestResultLabelIsBounded: whatever code a server makes up, the metric
// label is one of a fixed set.
func TestResultLabelIsBounded(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		err  error
		want string
	}{
		"success":          {nil, "success"},
		"known permanent":  {&smithy.GenericAPIError{Code: "AccessDenied"}, "AccessDenied"},
		"known transient":  {&smithy.GenericAPIError{Code: "Throttling"}, "Throttling"},
		"wrapped":          {fmt.Errorf("calling: %w", &smithy.GenericAPIError{Code: "IDPRejectedClaim"}), "IDPRejectedClaim"},
		"made-up code":     {&smithy.GenericAPIError{Code: "Tenant-Chosen-Value-12345"}, "other"},
		"code like a path": {&smithy.GenericAPIError{Code: "a/b/c"}, "other"},
		"empty code":       {&smithy.GenericAPIError{}, "other"},
		"no answer":        {context.DeadlineExceeded, "error"},
		"plain error":      {errors.New("connection refused"), "error"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := result(tc.err); got != tc.want {
				t.Errorf("result = %q, want %q", got, tc.want)
			}
		})
	}
}
