package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Write is one line of -loop output.
type Write struct {
	Time  time.Time `json:"time"` // when the write was started
	Round int       `json:"round"`
	// AccessKeyID signed the request; empty when no credentials were had.
	AccessKeyID string `json:"accessKeyId"`
	Error       string `json:"error,omitempty"`
}

// writeLoop creates the bucket (retrying until it can), then writes
// prefix-N every interval until total has passed, rounds writes were made
// (0: no limit) or SIGTERM arrives.
func writeLoop(ctx context.Context, client *s3.Client, bucket, prefix string, every, total time.Duration, rounds int) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	if total > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, total)
		defer cancel()
	}
	enc := json.NewEncoder(os.Stdout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	bucketReady := false
	for i := 0; ; i++ {
		w := Write{Time: time.Now().UTC(), Round: i}
		var err error
		if !bucketReady {
			err = createBucket(ctx, client, bucket, &w.AccessKeyID)
			bucketReady = err == nil
		}
		if err == nil {
			_, err = client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("%s-%d", prefix, i)),
				Body: strings.NewReader("written by aws-sdk-go-v2\n"),
			}, signedBy(&w.AccessKeyID))
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.Error = err.Error()
		}
		_ = enc.Encode(w)
		if rounds > 0 && i+1 >= rounds {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func createBucket(ctx context.Context, client *s3.Client, bucket string, akid *string) error {
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}, signedBy(akid))
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("creating bucket: %w", err)
	}
	return nil
}

// signedBy records the access key id of the request's signature: it runs
// after the signing step, once per attempt, so the last attempt's key wins.
func signedBy(akid *string) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("stsbindSignedBy",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if req, ok := in.Request.(*smithyhttp.Request); ok {
						*akid = credentialOf(req.Header.Get("Authorization"))
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	}
}

// credentialOf is the access key id in a SigV4 Authorization header:
// "AWS4-HMAC-SHA256 Credential=AKID/date/region/s3/aws4_request, ...".
func credentialOf(auth string) string {
	_, rest, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}
