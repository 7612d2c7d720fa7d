package stsclient

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/stsbind/stsbind/internal/credentials"
)

// call makes one STS call and reads its answer. The web identity call is
// unsigned; every other one is signed with req.Signer.
func call(ctx context.Context, c *sts.Client, req Request) (Result, error) {
	seconds := aws.Int32(int32(req.Duration / time.Second))
	switch req.Operation {
	case AssumeRoleWithWebIdentity:
		in := &sts.AssumeRoleWithWebIdentityInput{
			RoleArn: aws.String(req.RoleARN), RoleSessionName: aws.String(req.SessionName),
			WebIdentityToken: aws.String(req.Token), DurationSeconds: seconds,
			Policy: optional(req.Policy), PolicyArns: policyARNs(req.PolicyARNs),
		}
		out, err := c.AssumeRoleWithWebIdentity(ctx, in)
		if err != nil {
			return Result{}, err
		}
		res, err := fromSTS(out.Credentials)
		res.Subject = aws.ToString(out.SubjectFromWebIdentityToken)
		if out.AssumedRoleUser != nil {
			res.AssumedRoleARN = aws.ToString(out.AssumedRoleUser.Arn)
		}
		return res, err
	case AssumeRole:
		if req.Signer == nil {
			return Result{}, fmt.Errorf("AssumeRole needs signing credentials")
		}
		in := &sts.AssumeRoleInput{
			RoleArn: aws.String(req.RoleARN), RoleSessionName: aws.String(req.SessionName), DurationSeconds: seconds,
			Policy: optional(req.Policy), PolicyArns: policyARNs(req.PolicyARNs), Tags: tags(req.Tags),
			TransitiveTagKeys: req.TransitiveTagKeys, ExternalId: optional(req.ExternalID), SourceIdentity: optional(req.SourceIdentity),
		}
		out, err := c.AssumeRole(ctx, in, signedBy(req.Signer))
		if err != nil {
			return Result{}, err
		}
		res, err := fromSTS(out.Credentials)
		if out.AssumedRoleUser != nil {
			res.AssumedRoleARN = aws.ToString(out.AssumedRoleUser.Arn)
		}
		return res, err
	case GetFederationToken:
		if req.Signer == nil {
			return Result{}, fmt.Errorf("GetFederationToken needs signing credentials")
		}
		in := &sts.GetFederationTokenInput{
			Name: aws.String(req.SessionName), DurationSeconds: seconds,
			Policy: optional(req.Policy), PolicyArns: policyARNs(req.PolicyARNs), Tags: tags(req.Tags),
		}
		out, err := c.GetFederationToken(ctx, in, signedBy(req.Signer))
		if err != nil {
			return Result{}, err
		}
		res, err := fromSTS(out.Credentials)
		if out.FederatedUser != nil {
			res.AssumedRoleARN = aws.ToString(out.FederatedUser.Arn)
		}
		return res, err
	case GetSessionToken:
		if req.Signer == nil {
			return Result{}, fmt.Errorf("GetSessionToken needs signing credentials")
		}
		out, err := c.GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: seconds}, signedBy(req.Signer))
		if err != nil {
			return Result{}, err
		}
		return fromSTS(out.Credentials)
	}
	return Result{}, fmt.Errorf("unknown STS operation %q", req.Operation)
}

// signedBy makes one call sign with c instead of the client's anonymous
// credentials.
func signedBy(c *credentials.Credentials) func(*sts.Options) {
	return func(o *sts.Options) {
		o.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
		})
	}
}

func fromSTS(c *ststypes.Credentials) (Result, error) {
	if c == nil || c.Expiration == nil {
		return Result{}, fmt.Errorf("STS answered without credentials")
	}
	return Result{Credentials: credentials.Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expiration:      c.Expiration.UTC(),
	}}, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

func policyARNs(arns []string) []ststypes.PolicyDescriptorType {
	var out []ststypes.PolicyDescriptorType
	for _, arn := range arns {
		out = append(out, ststypes.PolicyDescriptorType{Arn: aws.String(arn)})
	}
	return out
}

// tags in key order, so the request is the same every time.
func tags(m map[string]string) []ststypes.Tag {
	var out []ststypes.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ststypes.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}
