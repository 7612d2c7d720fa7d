package controllers

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
)

// TestClassifySTSError drives each AWS error through the real SDK against the
// in-test STS, so classification sees what the SDK really returns.
func TestClassifySTSError(t *testing.T) {
	t.Parallel()
	srv := ststest.NewServer()
	t.Cleanup(srv.Close)
	client := stsclient.New(stsclient.Options{})

	tests := map[string]struct {
		fault      ststest.Fault
		wantKind   faultKind
		wantReason string
	}{
		"AccessDenied":                {fault: ststest.Fault{Status: 403, Code: "AccessDenied", Message: "no"}, wantKind: permanent, wantReason: "AccessDenied"},
		"InvalidIdentityToken":        {fault: ststest.Fault{Code: "InvalidIdentityToken", Message: "bad iss"}, wantKind: permanent, wantReason: "InvalidIdentityToken"},
		"IDPRejectedClaim":            {fault: ststest.Fault{Code: "IDPRejectedClaim", Message: "aud"}, wantKind: permanent, wantReason: "IDPRejectedClaim"},
		"MalformedPolicyDocument":     {fault: ststest.Fault{Code: "MalformedPolicyDocument", Message: "x"}, wantKind: permanent, wantReason: "MalformedPolicyDocument"},
		"PackedPolicyTooLarge":        {fault: ststest.Fault{Code: "PackedPolicyTooLarge", Message: "x"}, wantKind: permanent, wantReason: "PackedPolicyTooLarge"},
		"RegionDisabledException":     {fault: ststest.Fault{Status: 403, Code: "RegionDisabledException", Message: "x"}, wantKind: permanent, wantReason: "RegionDisabledException"},
		"ValidationError":             {fault: ststest.Fault{Code: "ValidationError", Message: "x"}, wantKind: permanent, wantReason: "ValidationError"},
		"MinIO InvalidParameterValue": {fault: ststest.Fault{Code: "InvalidParameterValue", Message: "audience"}, wantKind: permanent, wantReason: "InvalidParameterValue"},
		"unknown 4xx code":            {fault: ststest.Fault{Code: "SomethingNew", Message: "x"}, wantKind: permanent, wantReason: "SomethingNew"},
		"SignatureDoesNotMatch":       {fault: ststest.Fault{Status: 403, Code: "SignatureDoesNotMatch", Message: "signature"}, wantKind: permanent, wantReason: "SignatureDoesNotMatch"},
		"InvalidClientTokenId":        {fault: ststest.Fault{Status: 403, Code: "InvalidClientTokenId", Message: "key"}, wantKind: permanent, wantReason: "InvalidClientTokenId"},
		"RegionDisabled":              {fault: ststest.Fault{Status: 403, Code: "RegionDisabled", Message: "x"}, wantKind: permanent, wantReason: "RegionDisabled"},
		"ExpiredToken (signed calls)": {fault: ststest.Fault{Code: "ExpiredToken", Message: "first session expired"}, wantKind: transient, wantReason: "ExpiredToken"},
		"Throttling":                  {fault: ststest.Fault{Code: "Throttling", Message: "Rate exceeded"}, wantKind: transient, wantReason: "Throttling"},
		"IDPCommunicationError":       {fault: ststest.Fault{Code: "IDPCommunicationError", Message: "x"}, wantKind: transient, wantReason: "IDPCommunicationError"},
		"ExpiredTokenException":       {fault: ststest.Fault{Code: "ExpiredTokenException", Message: "x"}, wantKind: transient, wantReason: "ExpiredTokenException"},
		"unknown 5xx code":            {fault: ststest.Fault{Status: 503, Code: "Overloaded", Message: "x"}, wantKind: transient, wantReason: "Overloaded"},
		"429 unknown code":            {fault: ststest.Fault{Status: 429, Code: "SlowDown", Message: "x"}, wantKind: transient, wantReason: "SlowDown"},
		"code not a reason":           {fault: ststest.Fault{Code: "Bad Code!", Message: "x"}, wantKind: permanent, wantReason: "STSError"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			role := "arn:aws:iam::123456789012:role/" + name
			srv.SetFault(role, &tc.fault)
			_, err := client.AssumeRoleWithWebIdentity(context.Background(), stsclient.Request{
				Provider: stsclient.Provider{Name: "p", Region: "us-east-1", Endpoint: srv.URL, Timeout: 2 * time.Second}, RoleARN: role, SessionName: "s", Token: "t", Duration: time.Hour,
			})
			if err == nil {
				t.Fatal("no error")
			}
			got := classifySTSError(err)
			if got.Kind != tc.wantKind || got.Reason != tc.wantReason || got.Message != tc.fault.Message {
				t.Errorf("classifySTSError = %+v, want kind %v reason %s message %q", got, tc.wantKind, tc.wantReason, tc.fault.Message)
			}
		})
	}
}

func TestClassifyUnreachableSTS(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	client := stsclient.New(stsclient.Options{})
	_, err = client.AssumeRoleWithWebIdentity(context.Background(), stsclient.Request{
		Provider: stsclient.Provider{Name: "p", Region: "us-east-1", Endpoint: "http://" + addr, Timeout: 2 * time.Second}, RoleARN: "arn:aws:iam::123456789012:role/x", SessionName: "s", Token: "t", Duration: time.Hour,
	})
	if got := classifySTSError(err); got.Kind != transient || got.Reason != "STSUnreachable" {
		t.Errorf("refused connection: %+v", got)
	}
	if got := classifySTSError(context.DeadlineExceeded); got.Kind != transient {
		t.Errorf("deadline: %+v", got)
	}
	if got := classifySTSError(errors.New("anything else")); got.Kind != transient {
		t.Errorf("unknown error: %+v", got)
	}
}
