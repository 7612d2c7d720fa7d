package ststest

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
)

const (
	aliceKey    = "AKIAALICE00000000001"
	aliceSecret = "alice-secret-0123456789abcdefghijklmnopq"
	aliceAcct   = "111122223333"
	targetRole  = "arn:aws:iam::444455556666:role/target"
	secondRole  = "arn:aws:iam::777788889999:role/team/second"
	webRole     = "arn:aws:iam::123456789012:role/web"
	// A JWT with iss, sub and aud; the fake does not verify signatures.
	webToken = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50Om5zOnNhIiwiYXVkIjpbInN0cy5hbWF6b25hd3MuY29tIl19.c2ln"
)

// newServer starts a server trusting alice's key, closed with the test.
func newServer(t *testing.T) *Server {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	s.AddUser("alice", aliceKey, aliceSecret, aliceAcct)
	return s
}

// client is the real SDK client; httpClient may be nil.
func client(s *Server, creds aws.CredentialsProvider, httpClient sts.HTTPClient) *sts.Client {
	if httpClient == nil {
		httpClient = awshttp.NewBuildableClient()
	}
	url := s.URL
	return sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: &url, Credentials: creds, HTTPClient: httpClient, Retryer: aws.NopRetryer{}})
}

func static(id, secret, token string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(id, secret, token)
}

func alice(s *Server) *sts.Client { return client(s, static(aliceKey, aliceSecret, ""), nil) }

// as is a client signing with credentials the server issued.
func as(s *Server, c *types.Credentials) *sts.Client {
	return client(s, static(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken), nil)
}

// outcome is what an error answer came down to: HTTP status and AWS code.
type outcome struct {
	Status int
	Code   string
}

func sdkOutcome(err error) outcome {
	if err == nil {
		return outcome{Status: http.StatusOK}
	}
	var o outcome
	var api smithy.APIError
	if errors.As(err, &api) {
		o.Code = api.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		o.Status = re.HTTPStatusCode()
	}
	return o
}

func rawOutcome(t *testing.T, resp *http.Response) outcome {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e errorResponse
	if resp.StatusCode != http.StatusOK {
		if err := xml.Unmarshal(body, &e); err != nil {
			t.Fatalf("answer %d is not an AWS error document: %v: %s", resp.StatusCode, err, body)
		}
	}
	return outcome{Status: resp.StatusCode, Code: e.Error.Code}
}

func callerARN(t *testing.T, c *sts.Client) string {
	t.Helper()
	out, err := c.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	return *out.Arn
}

// bodyRewriter changes the request body after the SDK signed it.
type bodyRewriter struct {
	old, new string
	next     sts.HTTPClient
}

func (b bodyRewriter) Do(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	changed := strings.Replace(string(body), b.old, b.new, 1)
	if changed == string(body) {
		return nil, errors.New("bodyRewriter: " + b.old + " not in the body")
	}
	r.Body = io.NopCloser(strings.NewReader(changed))
	r.ContentLength = int64(len(changed))
	return b.next.Do(r)
}
