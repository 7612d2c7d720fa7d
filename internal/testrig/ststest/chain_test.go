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
)

func tag(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }

func TestRoleChaining(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	webSession := func(t *testing.T, s *Server) *types.Credentials {
		t.Helper()
		out, err := client(s, aws.AnonymousCredentials{}, nil).AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
			RoleArn: aws.String(webRole), RoleSessionName: aws.String("pod"), WebIdentityToken: aws.String(webToken)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Credentials
	}
	userSession := func(t *testing.T, s *Server) *types.Credentials {
		t.Helper()
		out, err := alice(s).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
		if err != nil {
			t.Fatal(err)
		}
		return out.Credentials
	}
	// taggedRole is alice's AssumeRole of targetRole with two tags, cluster
	// transitive, and a source identity.
	taggedRole := func(t *testing.T, s *Server) *types.Credentials {
		t.Helper()
		out, err := alice(s).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String("first"),
			Tags: []types.Tag{tag("cluster", "c1"), tag("namespace", "ns")}, TransitiveTagKeys: []string{"cluster"}, SourceIdentity: aws.String("alice")})
		if err != nil {
			t.Fatal(err)
		}
		return out.Credentials
	}
	federated := func(t *testing.T, s *Server) *types.Credentials {
		t.Helper()
		out, err := alice(s).GetFederationToken(ctx, &sts.GetFederationTokenInput{Name: aws.String("User1")})
		if err != nil {
			t.Fatal(err)
		}
		return out.Credentials
	}
	secondCall := func(duration int32, tags []types.Tag, sourceIdentity *string) *sts.AssumeRoleInput {
		in := &sts.AssumeRoleInput{RoleArn: aws.String(secondRole), RoleSessionName: aws.String("second"), Tags: tags, SourceIdentity: sourceIdentity}
		if duration != 0 {
			in.DurationSeconds = aws.Int32(duration)
		}
		return in
	}
	// assume is a chained AssumeRole answering its SourceIdentity.
	assume := func(duration int32, tags []types.Tag, sourceIdentity *string) func(*sts.Client) (string, error) {
		return func(c *sts.Client) (string, error) {
			out, err := c.AssumeRole(ctx, secondCall(duration, tags, sourceIdentity))
			if err != nil {
				return "", err
			}
			return aws.ToString(out.SourceIdentity), nil
		}
	}
	cases := map[string]struct {
		first func(*testing.T, *Server) *types.Credentials // nil: alice's own keys
		call  func(*sts.Client) (string, error)
		want  outcome
		// a chained AssumeRole that succeeded: the new session's tags and answered source identity
		wantTags           map[string]string
		wantSourceIdentity string
		wantMessage        string // part of the error message
	}{
		"web identity session, one hour": {
			first: webSession,
			call:  assume(3600, nil, nil),
			want:  outcome{200, ""},
		},
		"web identity session, default duration": {
			first: webSession,
			call:  assume(0, nil, nil),
			want:  outcome{200, ""},
		},
		"web identity session, over one hour": {
			first:       webSession,
			call:        assume(3601, nil, nil),
			want:        outcome{400, "ValidationError"},
			wantMessage: "exceeds the 1 hour session limit for roles assumed by role chaining",
		},
		"assumed role session, over one hour": {
			first: taggedRole,
			call:  assume(7200, nil, nil),
			want:  outcome{400, "ValidationError"},
		},
		"GetSessionToken session, over one hour": {
			first: userSession,
			call:  assume(7200, nil, nil),
			want:  outcome{400, "ValidationError"},
		},
		"IAM user, over one hour, is no chain": {
			call: assume(7200, nil, nil),
			want: outcome{200, ""},
		},
		"transitive tags and source identity are inherited": {
			first:              taggedRole,
			call:               assume(0, []types.Tag{tag("app", "x")}, nil),
			want:               outcome{200, ""},
			wantTags:           map[string]string{"cluster": "c1", "app": "x"},
			wantSourceIdentity: "alice",
		},
		"an inherited transitive tag cannot be sent again": {
			first: taggedRole,
			call:  assume(0, []types.Tag{tag("Cluster", "other")}, nil),
			want:  outcome{400, "ValidationError"},
		},
		"the source identity cannot change": {
			first: taggedRole,
			call:  assume(0, nil, aws.String("mallory")),
			want:  outcome{400, "ValidationError"},
		},
		"the same source identity may be sent again": {
			first:              taggedRole,
			call:               assume(0, nil, aws.String("alice")),
			want:               outcome{200, ""},
			wantTags:           map[string]string{"cluster": "c1"},
			wantSourceIdentity: "alice",
		},
		"federated user cannot assume a role": {
			first: federated,
			call:  assume(0, nil, nil),
			want:  outcome{403, "AccessDenied"},
		},
		"role session cannot GetSessionToken": {
			first: webSession,
			call: func(c *sts.Client) (string, error) {
				_, err := c.GetSessionToken(ctx, &sts.GetSessionTokenInput{})
				return "", err
			},
			want: outcome{403, "AccessDenied"},
		},
		"session cannot GetFederationToken": {
			first: userSession,
			call: func(c *sts.Client) (string, error) {
				_, err := c.GetFederationToken(ctx, &sts.GetFederationTokenInput{Name: aws.String("User1")})
				return "", err
			},
			want: outcome{403, "AccessDenied"},
		},
		"federated user may GetCallerIdentity": {
			first: federated,
			call: func(c *sts.Client) (string, error) {
				_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
				return "", err
			},
			want: outcome{200, ""},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			c := alice(s)
			callerARN := "arn:aws:iam::" + aliceAcct + ":user/alice"
			if tc.first != nil {
				creds := tc.first(t, s)
				c = as(s, creds)
				callerARN = s.Issued()[0].ARN
			}
			sourceIdentity, err := tc.call(c)
			if got := sdkOutcome(err); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantMessage) {
				t.Errorf("error %q, want it to say %q", err, tc.wantMessage)
			}
			if sourceIdentity != tc.wantSourceIdentity {
				t.Errorf("answered SourceIdentity %q, want %q", sourceIdentity, tc.wantSourceIdentity)
			}
			calls := s.Calls("")
			if last := calls[len(calls)-1]; last.CallerARN != callerARN || last.Error != tc.want.Code {
				t.Errorf("logged CallerARN %q, Error %q; want %q, %q", last.CallerARN, last.Error, callerARN, tc.want.Code)
			}
			if tc.want.Code != "" || len(s.Calls(secondRole)) == 0 {
				return
			}
			issued := s.Issued()
			last := issued[len(issued)-1]
			if d := cmp.Diff(tc.wantTags, last.Tags); d != "" {
				t.Errorf("chained session tags (-want +got):\n%s", d)
			}
			if last.ARN != "arn:aws:sts::777788889999:assumed-role/second/second" {
				t.Errorf("chained session ARN %s", last.ARN)
			}
			if want := time.Hour; tc.first != nil && time.Until(last.Expiration).Round(time.Minute) != want {
				t.Errorf("chained session lasts %s, want %s", time.Until(last.Expiration), want)
			}
		})
	}
}
