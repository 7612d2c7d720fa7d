package ststest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// answer is what a test reads from an operation's result.
type answer struct {
	ARN, ID, Account, SourceIdentity string
	Packed                           int32
	Lifetime                         time.Duration // Expiration - now, rounded to minutes
}

const bucketPolicy = `{"Statement":[{"Sid":"1","Action":["s3:ListBucket"],"Effect":"Allow","Resource":"arn:aws:s3:::YourBucketName"}]}`

func lifetime(c *types.Credentials) time.Duration {
	return time.Until(*c.Expiration).Round(time.Minute)
}

func TestOperations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	userARN := "arn:aws:iam::" + aliceAcct + ":user/alice"
	cases := map[string]struct {
		do func(*Server) (*types.Credentials, answer, error)
		// want.ID is a prefix; the rest of an id is the server's.
		want answer
		// wantCaller is GetCallerIdentity's Arn with the credentials returned.
		wantCaller string
		wantCall   Call
		wantTags   map[string]string // the issued session's tags
	}{
		"GetCallerIdentity as an IAM user": {
			do: func(s *Server) (*types.Credentials, answer, error) {
				out, err := alice(s).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
				if err != nil {
					return nil, answer{}, err
				}
				return nil, answer{ARN: *out.Arn, ID: *out.UserId, Account: *out.Account}, nil
			},
			want:     answer{ARN: userARN, ID: "AIDA", Account: aliceAcct},
			wantCall: Call{Operation: OpGetCallerIdentity, CallerARN: userARN},
		},
		"GetSessionToken is the user, 12 hours by default": {
			do: func(s *Server) (*types.Credentials, answer, error) {
				out, err := alice(s).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
				if err != nil {
					return nil, answer{}, err
				}
				return out.Credentials, answer{Lifetime: lifetime(out.Credentials)}, nil
			},
			want:       answer{Lifetime: 12 * time.Hour},
			wantCaller: userARN,
			wantCall:   Call{Operation: OpGetSessionToken, CallerARN: userARN},
		},
		"GetSessionToken with a duration": {
			do: func(s *Server) (*types.Credentials, answer, error) {
				out, err := alice(s).GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(900)})
				if err != nil {
					return nil, answer{}, err
				}
				return out.Credentials, answer{Lifetime: lifetime(out.Credentials)}, nil
			},
			want:       answer{Lifetime: 15 * time.Minute},
			wantCaller: userARN,
			wantCall:   Call{Operation: OpGetSessionToken, DurationSeconds: 900, CallerARN: userARN},
		},
		"GetFederationToken with the S3 guide's policy": {
			do: func(s *Server) (*types.Credentials, answer, error) {
				out, err := alice(s).GetFederationToken(ctx, &sts.GetFederationTokenInput{
					Name:            aws.String("User1"),
					DurationSeconds: aws.Int32(3600),
					Policy:          aws.String(bucketPolicy),
					PolicyArns:      []types.PolicyDescriptorType{{Arn: aws.String("arn:aws:iam::aws:policy/ReadOnlyAccess")}},
					Tags:            []types.Tag{{Key: aws.String("team"), Value: aws.String("storage")}},
				})
				if err != nil {
					return nil, answer{}, err
				}
				return out.Credentials, answer{ARN: *out.FederatedUser.Arn, ID: *out.FederatedUser.FederatedUserId,
					Packed: *out.PackedPolicySize, Lifetime: lifetime(out.Credentials)}, nil
			},
			want: answer{ARN: "arn:aws:sts::" + aliceAcct + ":federated-user/User1", ID: aliceAcct + ":User1", Packed: 4, Lifetime: time.Hour},
			wantCall: Call{Operation: OpGetFederationToken, FederatedName: "User1", DurationSeconds: 3600, Policy: bucketPolicy,
				PolicyARNs: []string{"arn:aws:iam::aws:policy/ReadOnlyAccess"}, Tags: map[string]string{"team": "storage"}, CallerARN: userARN},
			wantCaller: "arn:aws:sts::" + aliceAcct + ":federated-user/User1",
			wantTags:   map[string]string{"team": "storage"},
		},
		"AssumeRole with every parameter": {
			do: func(s *Server) (*types.Credentials, answer, error) {
				out, err := alice(s).AssumeRole(ctx, &sts.AssumeRoleInput{
					RoleArn:           aws.String(targetRole),
					RoleSessionName:   aws.String("ns.binding"),
					DurationSeconds:   aws.Int32(7200),
					Policy:            aws.String(bucketPolicy),
					PolicyArns:        []types.PolicyDescriptorType{{Arn: aws.String("arn:aws:iam::aws:policy/ReadOnlyAccess")}},
					ExternalId:        aws.String("ext-123"),
					Tags:              []types.Tag{{Key: aws.String("namespace"), Value: aws.String("ns")}, {Key: aws.String("cluster"), Value: aws.String("c1")}},
					TransitiveTagKeys: []string{"cluster"},
					SourceIdentity:    aws.String("system.ns.sa"),
				})
				if err != nil {
					return nil, answer{}, err
				}
				return out.Credentials, answer{ARN: *out.AssumedRoleUser.Arn, ID: *out.AssumedRoleUser.AssumedRoleId,
					SourceIdentity: *out.SourceIdentity, Packed: *out.PackedPolicySize, Lifetime: lifetime(out.Credentials)}, nil
			},
			want: answer{ARN: "arn:aws:sts::444455556666:assumed-role/target/ns.binding", ID: "AROA", SourceIdentity: "system.ns.sa", Packed: 5, Lifetime: 2 * time.Hour},
			wantCall: Call{Operation: OpAssumeRole, RoleARN: targetRole, SessionName: "ns.binding", DurationSeconds: 7200, Policy: bucketPolicy,
				PolicyARNs: []string{"arn:aws:iam::aws:policy/ReadOnlyAccess"}, ExternalID: "ext-123",
				Tags: map[string]string{"namespace": "ns", "cluster": "c1"}, TransitiveTagKeys: []string{"cluster"},
				SourceIdentity: "system.ns.sa", CallerARN: userARN},
			wantCaller: "arn:aws:sts::444455556666:assumed-role/target/ns.binding",
			wantTags:   map[string]string{"namespace": "ns", "cluster": "c1"},
		},
		"AssumeRoleWithWebIdentity stays unsigned": {
			do: func(s *Server) (*types.Credentials, answer, error) {
				out, err := client(s, aws.AnonymousCredentials{}, nil).AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
					RoleArn: aws.String(webRole), RoleSessionName: aws.String("pod"), WebIdentityToken: aws.String(webToken),
				})
				if err != nil {
					return nil, answer{}, err
				}
				return out.Credentials, answer{ARN: *out.AssumedRoleUser.Arn, ID: *out.AssumedRoleUser.AssumedRoleId,
					Account: *out.Audience + " " + *out.Provider + " " + *out.SubjectFromWebIdentityToken, Lifetime: lifetime(out.Credentials)}, nil
			},
			want: answer{ARN: "arn:aws:sts::123456789012:assumed-role/web/pod", ID: "AROA",
				Account: "sts.amazonaws.com https://issuer.example system:serviceaccount:ns:sa", Lifetime: time.Hour},
			wantCall:   Call{Operation: OpAssumeRoleWithWebIdentity, RoleARN: webRole, SessionName: "pod", Token: webToken},
			wantCaller: "arn:aws:sts::123456789012:assumed-role/web/pod",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			creds, got, err := tc.do(s)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got.ID, tc.want.ID) {
				t.Errorf("id %q, want prefix %q", got.ID, tc.want.ID)
			}
			got.ID = tc.want.ID
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("answer (-want +got):\n%s", d)
			}
			calls := s.Calls("")
			if len(calls) != 1 {
				t.Fatalf("%d calls logged, want 1", len(calls))
			}
			want := tc.wantCall
			if want.CallerARN != "" {
				want.CallerAccessKeyID, want.Region = aliceKey, "us-east-1"
			}
			if creds != nil {
				want.Answered = *creds.AccessKeyId
			}
			if d := cmp.Diff(want, calls[0], cmpopts.IgnoreFields(Call{}, "Time")); d != "" {
				t.Errorf("call log (-want +got):\n%s", d)
			}
			if creds == nil {
				return
			}
			issued := s.Issued()
			if len(issued) != 1 || issued[0].AccessKeyID != *creds.AccessKeyId || issued[0].SessionToken != *creds.SessionToken ||
				issued[0].ARN != tc.wantCaller || issued[0].Operation != tc.wantCall.Operation {
				t.Errorf("Issued() = %+v, want the credentials answered", issued)
			}
			if d := cmp.Diff(tc.wantTags, issued[0].Tags); d != "" {
				t.Errorf("issued session tags (-want +got):\n%s", d)
			}
			if got := callerARN(t, as(s, creds)); got != tc.wantCaller {
				t.Errorf("GetCallerIdentity with the answered credentials: %s, want %s", got, tc.wantCaller)
			}
		})
	}
}

func TestRoleIDsAreStable(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ids := map[string]bool{}
	for _, session := range []string{"one", "two"} {
		out, err := alice(s).AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String(session)})
		if err != nil {
			t.Fatal(err)
		}
		role, sess, _ := strings.Cut(*out.AssumedRoleUser.AssumedRoleId, ":")
		if sess != session || len(role) != 21 {
			t.Errorf("AssumedRoleId %q, want AROA + 17 characters : %s", *out.AssumedRoleUser.AssumedRoleId, session)
		}
		ids[role] = true
	}
	if len(ids) != 1 {
		t.Errorf("role ids %v, want one id per role", ids)
	}
}
