package controllers

import (
	"errors"
	"regexp"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/stsclient"
)

// faultKind says how the controller retries a failed STS call.
type faultKind int

const (
	// transient: throttling, 5xx, timeouts, a token STS saw as expired. The
	// Secret stays as it is; retry with exponential backoff.
	transient faultKind = iota
	// permanent: IAM or STS refused the request as configured. Retry slowly:
	// the IAM side may be fixed without touching the binding.
	permanent
)

// stsFault is a classified STS failure.
type stsFault struct {
	Kind    faultKind
	Reason  string // condition and event reason: the AWS error code when it has one
	Message string // the server's own text
}

var reasonShape = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// classifySTSError sorts an STS failure by its AWS error code string, then by
// HTTP status; anything without an answer from STS (refused connection,
// timeout, DNS) is transient.
func classifySTSError(err error) stsFault {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code, msg := apiErr.ErrorCode(), apiErr.ErrorMessage()
		reason := code
		if !reasonShape.MatchString(reason) {
			reason = stsbindv1.ReasonSTSError
		}
		if msg == "" {
			msg = code
		}
		switch {
		case stsclient.PermanentCodes[code]:
			return stsFault{Kind: permanent, Reason: reason, Message: msg}
		case stsclient.TransientCodes[code]:
			return stsFault{Kind: transient, Reason: reason, Message: msg}
		}
		if retryableStatus(err) {
			return stsFault{Kind: transient, Reason: reason, Message: msg}
		}
		return stsFault{Kind: permanent, Reason: reason, Message: msg}
	}
	// The SDK wraps send failures in a ResponseError too, with status 0.
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() != 0 && !retryableStatus(err) {
		return stsFault{Kind: permanent, Reason: stsbindv1.ReasonSTSError, Message: err.Error()}
	}
	// No answer from STS at all: refused connection, timeout, DNS, TLS.
	return stsFault{Kind: transient, Reason: stsbindv1.ReasonSTSUnreachable, Message: err.Error()}
}

// retryableStatus reports an HTTP answer of 429 or 5xx.
func retryableStatus(err error) bool {
	var respErr *awshttp.ResponseError
	if !errors.As(err, &respErr) {
		return false
	}
	code := respErr.HTTPStatusCode()
	return code == 429 || code >= 500
}
