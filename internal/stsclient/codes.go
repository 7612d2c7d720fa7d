package stsclient

// PermanentCodes are AWS error codes that repeat until someone changes IAM,
// STS settings or the binding.
var PermanentCodes = map[string]bool{
	"AccessDenied":            true,
	"InvalidIdentityToken":    true,
	"IDPRejectedClaim":        true,
	"MalformedPolicyDocument": true,
	"PackedPolicyTooLarge":    true,
	"RegionDisabledException": true,
	"ValidationError":         true,
	"InvalidParameterValue":   true, // MinIO: wrong audience, unknown role
	"InvalidAction":           true,
	"InvalidClientTokenId":    true,
	"NotAuthorized":           true,
}

// TransientCodes are AWS error codes worth retrying soon.
// ExpiredTokenException means the ServiceAccount token expired on the way:
// the retry mints a new one.
var TransientCodes = map[string]bool{
	"IDPCommunicationError":   true,
	"ExpiredTokenException":   true,
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
