package stsclient

// PermanentCodes are AWS error codes that repeat until someone changes IAM,
// STS settings or the binding.
var PermanentCodes = map[string]bool{
	"AccessDenied":                true,
	"InvalidIdentityToken":        true,
	"IDPRejectedClaim":            true,
	"MalformedPolicyDocument":     true,
	"PackedPolicyTooLarge":        true,
	"RegionDisabledException":     true,
	"ValidationError":             true,
	"InvalidParameterValue":       true, // MinIO: wrong audience, unknown role
	"InvalidAction":               true,
	"InvalidClientTokenId":        true,
	"NotAuthorized":               true,
	"SignatureDoesNotMatch":       true, // signed calls: a wrong secret key
	"RegionDisabled":              true,
	"InvalidParameterCombination": true,
}

// TransientCodes are AWS error codes worth retrying soon.
// ExpiredTokenException means the ServiceAccount token expired on the way:
// the retry mints a new one.
var TransientCodes = map[string]bool{
	"IDPCommunicationError":   true,
	"ExpiredTokenException":   true,
	"ExpiredToken":            true, // signed calls: a chained call's first session ran out; issue again
	"Throttling":              true,
	"ThrottlingException":     true,
	"RequestLimitExceeded":    true,
	"TooManyRequests":         true,
	"ServiceUnavailable":      true,
	"InternalFailure":         true,
	"InternalError":           true,
	"RequestTimeout":          true,
	"RequestTimeoutException": true,
}
