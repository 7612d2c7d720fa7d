package ststest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
)

func TestValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	assume := func(edit func(*sts.AssumeRoleInput)) func(*sts.Client) error {
		return func(c *sts.Client) error {
			in := &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String("session")}
			edit(in)
			_, err := c.AssumeRole(ctx, in)
			return err
		}
	}
	federate := func(edit func(*sts.GetFederationTokenInput)) func(*sts.Client) error {
		return func(c *sts.Client) error {
			in := &sts.GetFederationTokenInput{Name: aws.String("User1")}
			edit(in)
			_, err := c.GetFederationToken(ctx, in)
			return err
		}
	}
	sessionToken := func(seconds int32) func(*sts.Client) error {
		return func(c *sts.Client) error {
			_, err := c.GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(seconds)})
			return err
		}
	}
	manyTags := func(n, valueLen int) []types.Tag {
		var tags []types.Tag
		for i := range n {
			tags = append(tags, tag(fmt.Sprintf("key%d", i), strings.Repeat("v", valueLen)))
		}
		return tags
	}
	cases := map[string]struct {
		call func(*sts.Client) error
		want string // error code; "" succeeds
	}{
		"AssumeRole, shortest session name":  {call: assume(func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String("ab") })},
		"AssumeRole, session name too short": {call: assume(func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String("a") }), want: "ValidationError"},
		"AssumeRole, session name with a space": {
			call: assume(func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String("a b") }), want: "ValidationError"},
		"AssumeRole, not a role ARN": {
			call: assume(func(in *sts.AssumeRoleInput) { in.RoleArn = aws.String("arn:aws:iam::444455556666:user/bob") }), want: "ValidationError"},
		"AssumeRole, 899 seconds":      {call: assume(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(899) }), want: "ValidationError"},
		"AssumeRole, 12 hours":         {call: assume(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(43200) })},
		"AssumeRole, 12 hours and one": {call: assume(func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(43201) }), want: "ValidationError"},
		"AssumeRole, policy not JSON": {
			call: assume(func(in *sts.AssumeRoleInput) { in.Policy = aws.String("s3:ListBucket") }), want: "MalformedPolicyDocument"},
		"AssumeRole, 11 policy ARNs": {
			call: assume(func(in *sts.AssumeRoleInput) {
				for range 11 {
					in.PolicyArns = append(in.PolicyArns, types.PolicyDescriptorType{Arn: aws.String("arn:aws:iam::aws:policy/ReadOnlyAccess")})
				}
			}), want: "ValidationError"},
		"AssumeRole, external id too short": {call: assume(func(in *sts.AssumeRoleInput) { in.ExternalId = aws.String("x") }), want: "ValidationError"},
		"AssumeRole, duplicate tag keys in another case": {
			call: assume(func(in *sts.AssumeRoleInput) { in.Tags = []types.Tag{tag("team", "a"), tag("Team", "b")} }), want: "ValidationError"},
		"AssumeRole, transitive key without its tag": {
			call: assume(func(in *sts.AssumeRoleInput) {
				in.Tags = []types.Tag{tag("team", "a")}
				in.TransitiveTagKeys = []string{"env"}
			}), want: "ValidationError"},
		"AssumeRole, 51 tags": {call: assume(func(in *sts.AssumeRoleInput) { in.Tags = manyTags(51, 1) }), want: "ValidationError"},
		"AssumeRole, tag value of 257": {
			call: assume(func(in *sts.AssumeRoleInput) { in.Tags = manyTags(1, 257) }), want: "ValidationError"},
		"AssumeRole, 50 tags of 256": {
			call: assume(func(in *sts.AssumeRoleInput) { in.Tags = manyTags(50, 256) }), want: "PackedPolicyTooLarge"},
		"AssumeRole, 10 tags of 256": {call: assume(func(in *sts.AssumeRoleInput) { in.Tags = manyTags(10, 256) })},
		"GetFederationToken, name of 32": {
			call: federate(func(in *sts.GetFederationTokenInput) { in.Name = aws.String(strings.Repeat("n", 32)) })},
		"GetFederationToken, name of 33": {
			call: federate(func(in *sts.GetFederationTokenInput) { in.Name = aws.String(strings.Repeat("n", 33)) }), want: "ValidationError"},
		"GetFederationToken, name of 1": {
			call: federate(func(in *sts.GetFederationTokenInput) { in.Name = aws.String("n") }), want: "ValidationError"},
		"GetFederationToken, 36 hours": {
			call: federate(func(in *sts.GetFederationTokenInput) { in.DurationSeconds = aws.Int32(129600) })},
		"GetFederationToken, 36 hours and one": {
			call: federate(func(in *sts.GetFederationTokenInput) { in.DurationSeconds = aws.Int32(129601) }), want: "ValidationError"},
		"GetFederationToken, policy not JSON": {
			call: federate(func(in *sts.GetFederationTokenInput) { in.Policy = aws.String("{") }), want: "MalformedPolicyDocument"},
		"GetSessionToken, 900 seconds": {call: sessionToken(900)},
		"GetSessionToken, 899 seconds": {call: sessionToken(899), want: "ValidationError"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			err := tc.call(alice(s))
			want := outcome{200, ""}
			if tc.want != "" {
				want = outcome{400, tc.want}
			}
			if got := sdkOutcome(err); got != want {
				t.Fatalf("got %+v (%v), want %+v", got, err, want)
			}
			if calls := s.Calls(""); len(calls) != 1 || calls[0].Error != tc.want || (tc.want != "") != (len(s.Issued()) == 0) {
				t.Errorf("logged %+v and issued %d credentials", calls, len(s.Issued()))
			}
		})
	}
}
