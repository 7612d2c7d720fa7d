package ststest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-cmp/cmp"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	getSessionToken := func(t *testing.T, s *Server) *types.Credentials {
		t.Helper()
		out, err := alice(s).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
		if err != nil {
			t.Fatal(err)
		}
		return out.Credentials
	}
	callerIdentity := func(c *sts.Client) error {
		_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	}
	cases := map[string]struct {
		do        func(*testing.T, *Server) outcome
		want      outcome
		wantKeyID string // the CallerAccessKeyID logged: "" alice's, "none", "issued" the first issued, or a key
	}{
		"alice's key": {
			do:   func(t *testing.T, s *Server) outcome { return sdkOutcome(callerIdentity(alice(s))) },
			want: outcome{200, ""},
		},
		"unknown access key": {
			do: func(t *testing.T, s *Server) outcome {
				return sdkOutcome(callerIdentity(client(s, static("AKIAUNKNOWN000000000", aliceSecret, ""), nil)))
			},
			want:      outcome{403, "InvalidClientTokenId"},
			wantKeyID: "AKIAUNKNOWN000000000",
		},
		"wrong secret": {
			do: func(t *testing.T, s *Server) outcome {
				return sdkOutcome(callerIdentity(client(s, static(aliceKey, aliceSecret+"x", ""), nil)))
			},
			want: outcome{403, "SignatureDoesNotMatch"},
		},
		"body tampered after signing": {
			do: func(t *testing.T, s *Server) outcome {
				c := client(s, static(aliceKey, aliceSecret, ""), bodyRewriter{old: "role%2Ftarget", new: "role%2Fadmins", next: awshttp.NewBuildableClient()})
				_, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String("s")})
				return sdkOutcome(err)
			},
			want: outcome{403, "SignatureDoesNotMatch"},
		},
		"deleted access key": {
			do: func(t *testing.T, s *Server) outcome {
				s.DeleteAccessKey(aliceKey)
				return sdkOutcome(callerIdentity(alice(s)))
			},
			want: outcome{403, "InvalidClientTokenId"},
		},
		"rotated key: the new one works": {
			do: func(t *testing.T, s *Server) outcome {
				s.AddUser("alice", "AKIAALICE00000000002", "rotated-secret", aliceAcct)
				s.DeleteAccessKey(aliceKey)
				return sdkOutcome(callerIdentity(client(s, static("AKIAALICE00000000002", "rotated-secret", ""), nil)))
			},
			want:      outcome{200, ""},
			wantKeyID: "AKIAALICE00000000002",
		},
		"no signature": {
			do: func(t *testing.T, s *Server) outcome {
				return sdkOutcome(callerIdentity(client(s, aws.AnonymousCredentials{}, nil)))
			},
			want:      outcome{403, "MissingAuthenticationToken"},
			wantKeyID: "none",
		},
		"issued key without its session token": {
			do: func(t *testing.T, s *Server) outcome {
				c := getSessionToken(t, s)
				return sdkOutcome(callerIdentity(client(s, static(*c.AccessKeyId, *c.SecretAccessKey, ""), nil)))
			},
			want:      outcome{403, "InvalidClientTokenId"},
			wantKeyID: "issued",
		},
		"issued key with another session's token": {
			do: func(t *testing.T, s *Server) outcome {
				c, other := getSessionToken(t, s), getSessionToken(t, s)
				return sdkOutcome(callerIdentity(client(s, static(*c.AccessKeyId, *c.SecretAccessKey, *other.SessionToken), nil)))
			},
			want:      outcome{403, "InvalidClientTokenId"},
			wantKeyID: "issued",
		},
		"issued key with the wrong secret": {
			do: func(t *testing.T, s *Server) outcome {
				c := getSessionToken(t, s)
				return sdkOutcome(callerIdentity(client(s, static(*c.AccessKeyId, aliceSecret, *c.SessionToken), nil)))
			},
			want:      outcome{403, "SignatureDoesNotMatch"},
			wantKeyID: "issued",
		},
		"long-term key with a session token": {
			do: func(t *testing.T, s *Server) outcome {
				c := getSessionToken(t, s)
				return sdkOutcome(callerIdentity(client(s, static(aliceKey, aliceSecret, *c.SessionToken), nil)))
			},
			want: outcome{403, "InvalidClientTokenId"},
		},
		"issued session expired": {
			do: func(t *testing.T, s *Server) outcome {
				s.SetLifetime(OpGetSessionToken, -time.Hour)
				return sdkOutcome(callerIdentity(as(s, getSessionToken(t, s))))
			},
			want:      outcome{400, "ExpiredToken"},
			wantKeyID: "issued",
		},
		"signed 20 minutes ago (replay)": {
			do:   func(t *testing.T, s *Server) outcome { return rawCall(t, s, "sts", -20*time.Minute) },
			want: outcome{403, "SignatureDoesNotMatch"},
		},
		"signed 14 minutes ago (clock skew)": {
			do:   func(t *testing.T, s *Server) outcome { return rawCall(t, s, "sts", -14*time.Minute) },
			want: outcome{200, ""},
		},
		"signed for another service": {
			do:   func(t *testing.T, s *Server) outcome { return rawCall(t, s, "s3", 0) },
			want: outcome{403, "SignatureDoesNotMatch"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			if got := tc.do(t, s); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			calls := s.Calls("")
			last := calls[len(calls)-1]
			wantKey := tc.wantKeyID
			switch wantKey {
			case "":
				wantKey = aliceKey
			case "none":
				wantKey = ""
			case "issued":
				wantKey = s.Issued()[0].AccessKeyID
			}
			wantARN := ""
			if tc.want.Code == "" {
				wantARN = "arn:aws:iam::" + aliceAcct + ":user/alice"
			}
			got := []string{last.Error, last.CallerAccessKeyID, last.CallerARN}
			if d := cmp.Diff([]string{tc.want.Code, wantKey, wantARN}, got); d != "" {
				t.Errorf("logged Error, CallerAccessKeyID, CallerARN (-want +got):\n%s", d)
			}
		})
	}
}

// rawCall posts GetCallerIdentity signed by the SDK's signer as alice, for
// service, skew away from now.
func rawCall(t *testing.T, s *Server, service string, skew time.Duration) outcome {
	t.Helper()
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	req, err := http.NewRequest(http.MethodPost, s.URL+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: aliceKey, SecretAccessKey: aliceSecret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now().Add(skew)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return rawOutcome(t, resp)
}

// TestSessionExpiresInTime: credentials work until their Expiration, not after.
func TestSessionExpiresInTime(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.SetLifetime(targetRole, 2*time.Second)
	out, err := alice(s).AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String(targetRole), RoleSessionName: aws.String("short")})
	if err != nil {
		t.Fatal(err)
	}
	session := as(s, out.Credentials)
	if got := callerARN(t, session); got != "arn:aws:sts::444455556666:assumed-role/target/short" {
		t.Fatalf("GetCallerIdentity before expiry: %s", got)
	}
	time.Sleep(time.Until(*out.Credentials.Expiration) + 50*time.Millisecond) // the answered Expiration, not a guess
	_, err = session.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if got, want := sdkOutcome(err), (outcome{400, "ExpiredToken"}); got != want {
		t.Errorf("after Expiration: %+v, want %+v", got, want)
	}
}
