package ststest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func TestFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	assumeTarget := func(s *Server) error {
		_, err := alice(s).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String("s1")})
		return err
	}
	assumeSecond := func(s *Server) error {
		_, err := alice(s).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(secondRole), RoleSessionName: aws.String("s1")})
		return err
	}
	webIdentity := func(s *Server) error {
		_, err := client(s, aws.AnonymousCredentials{}, nil).AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
			RoleArn: aws.String(targetRole), RoleSessionName: aws.String("s1"), WebIdentityToken: aws.String(webToken)})
		return err
	}
	callerIdentity := func(s *Server) error {
		_, err := alice(s).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	}
	badSignature := func(s *Server) error {
		_, err := client(s, static(aliceKey, "wrong", ""), nil).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	}
	accessDenied := &Fault{Status: 403, Code: "AccessDenied", Message: "not trusted"}
	cases := map[string]struct {
		key   string
		fault *Fault
		calls []func(*Server) error
		want  []outcome
	}{
		"a role ARN's fault hits AssumeRole and web identity for that role only": {
			key: targetRole, fault: accessDenied,
			calls: []func(*Server) error{assumeTarget, webIdentity, assumeSecond, callerIdentity},
			want:  []outcome{{403, "AccessDenied"}, {403, "AccessDenied"}, {200, ""}, {200, ""}},
		},
		"an operation's fault hits that operation only": {
			key: OpGetCallerIdentity, fault: &Fault{Code: "RegionDisabled", Message: "STS is not activated in this region"},
			calls: []func(*Server) error{callerIdentity, assumeTarget},
			want:  []outcome{{400, "RegionDisabled"}, {200, ""}},
		},
		"every call": {
			key: "", fault: &Fault{Status: 503, Code: "ServiceUnavailable"},
			calls: []func(*Server) error{callerIdentity, webIdentity, assumeTarget},
			want:  []outcome{{503, "ServiceUnavailable"}, {503, "ServiceUnavailable"}, {503, "ServiceUnavailable"}},
		},
		"Times limits the fault": {
			key: OpAssumeRole, fault: &Fault{Code: "Throttling", Message: "Rate exceeded", Times: 2},
			calls: []func(*Server) error{assumeTarget, assumeSecond, assumeTarget},
			want:  []outcome{{400, "Throttling"}, {400, "Throttling"}, {200, ""}},
		},
		"authentication comes first and does not use up the fault": {
			key: "", fault: &Fault{Code: "Throttling", Times: 1},
			calls: []func(*Server) error{badSignature, callerIdentity, callerIdentity},
			want:  []outcome{{403, "SignatureDoesNotMatch"}, {400, "Throttling"}, {200, ""}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			s.SetFault(tc.key, tc.fault)
			for i, call := range tc.calls {
				if got := sdkOutcome(call(s)); got != tc.want[i] {
					t.Errorf("call %d: %+v, want %+v", i, got, tc.want[i])
				}
			}
			s.SetFault(tc.key, nil)
			for i, w := range tc.want {
				if w.Code == tc.fault.Code {
					if got := sdkOutcome(tc.calls[i](s)); got.Status != 200 {
						t.Errorf("call %d after clearing: %+v", i, got)
					}
					break
				}
			}
		})
	}
}

func TestLifetimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := map[string]struct {
		key  string
		d    time.Duration
		call func(*sts.Client) (*time.Time, error)
		want time.Duration
	}{
		"by role ARN for AssumeRole": {
			key: targetRole, d: 10 * time.Second,
			call: func(c *sts.Client) (*time.Time, error) {
				out, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String("s1")})
				if err != nil {
					return nil, err
				}
				return out.Credentials.Expiration, nil
			},
			want: 10 * time.Second,
		},
		"by operation for GetSessionToken": {
			key: OpGetSessionToken, d: 20 * time.Second,
			call: func(c *sts.Client) (*time.Time, error) {
				out, err := c.GetSessionToken(ctx, &sts.GetSessionTokenInput{})
				if err != nil {
					return nil, err
				}
				return out.Credentials.Expiration, nil
			},
			want: 20 * time.Second,
		},
		"another role's lifetime does not apply": {
			key: secondRole, d: 10 * time.Second,
			call: func(c *sts.Client) (*time.Time, error) {
				out, err := c.GetFederationToken(ctx, &sts.GetFederationTokenInput{Name: aws.String("User1"), DurationSeconds: aws.Int32(1800)})
				if err != nil {
					return nil, err
				}
				return out.Credentials.Expiration, nil
			},
			want: 30 * time.Minute,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			s.SetLifetime(tc.key, tc.d)
			exp, err := tc.call(alice(s))
			if err != nil {
				t.Fatal(err)
			}
			// Expiration is rounded up to the next whole second.
			if got := time.Until(*exp); got < tc.want-time.Second || got > tc.want+time.Second {
				t.Errorf("credentials last %s, want %s", got, tc.want)
			}
		})
	}
}
