// Command s3client is the aws-sdk-go-v2 consumer of the end-to-end tests: it
// loads credentials exactly as a Go program in a pod would (the default chain:
// environment, then AWS_CONFIG_FILE with credential_process), creates the
// bucket when missing, writes an object and lists the bucket.
//
// With -every it keeps doing so, as a long-running process does, until -for
// has passed, printing one line per round; a failed round is printed and the
// loop goes on, so a caller sees whether credentials keep working.
//
// With -loop it is a long-running writer: one client for its whole life, one
// object written every -every (default 1s) until -for has passed (0: until
// SIGTERM) or -rounds writes were made, and one JSON line per write saying
// when it was sent, which access key id signed it and the error if any, so a
// caller sees the moment a rotated key is first used.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint URL")
	bucket := flag.String("bucket", "stsbind-e2e", "bucket")
	key := flag.String("key", "go.txt", "object key")
	every := flag.Duration("every", 0, "repeat at this interval (0: once)")
	total := flag.Duration("for", 0, "with -every or -loop, how long to keep going (-loop: 0 is until SIGTERM)")
	loop := flag.Bool("loop", false, "write an object every -every and log which access key id signed it")
	rounds := flag.Int("rounds", 0, "with -loop, stop after this many writes (0: no limit)")
	flag.Parse()

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(awshttp.NewBuildableClient()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "loading config:", err)
		os.Exit(1)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(*endpoint)
		o.UsePathStyle = true
	})
	if *loop {
		writeLoop(ctx, client, *bucket, *key, cmp.Or(*every, time.Second), *total, *rounds)
		return
	}
	if *every == 0 {
		if err := round(ctx, client, *bucket, *key); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	end := time.Now().Add(*total)
	for i := 0; time.Now().Before(end); i++ {
		if err := round(ctx, client, *bucket, fmt.Sprintf("%s-%d", *key, i)); err != nil {
			fmt.Printf("round %d: FAIL %v\n", i, err)
		} else {
			fmt.Printf("round %d: ok\n", i)
		}
		time.Sleep(*every)
	}
}

func round(ctx context.Context, client *s3.Client, bucket, key string) error {
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("creating bucket: %w", err)
	}
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("written by aws-sdk-go-v2\n"),
	}); err != nil {
		return fmt.Errorf("putting %s: %w", key, err)
	}
	out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("listing: %w", err)
	}
	for _, o := range out.Contents {
		fmt.Println("object:", aws.ToString(o.Key))
	}
	return nil
}
