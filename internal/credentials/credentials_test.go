package credentials_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/google/go-cmp/cmp"

	"github.com/stsbind/stsbind/internal/credentials"
)

var sample = credentials.Credentials{
	AccessKeyID:     "ASIAEXAMPLEEXAMPLE01",
	SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	SessionToken:    "FwoGZXIvYXdzEJr//////////wEaDExample+Token/With=Padding==",
	Expiration:      time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC),
}

// TestSecretDataReadByTheSDK reads the rendered files with aws-sdk-go-v2's
// own shared-config loader, the reader every Go program in a pod uses.
func TestSecretDataReadByTheSDK(t *testing.T) {
	t.Parallel()
	data := credentials.SecretData(sample, "eu-west-1", "s3-reader")
	dir := t.TempDir()
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	shared, err := config.LoadSharedConfigProfile(context.Background(), "default", func(o *config.LoadSharedConfigOptions) {
		o.CredentialsFiles = []string{filepath.Join(dir, credentials.KeyCredentialsFile)}
		o.ConfigFiles = []string{filepath.Join(dir, credentials.KeyConfigFile)}
	})
	if err != nil {
		t.Fatalf("the SDK cannot read the files: %v", err)
	}
	if shared.Region != "eu-west-1" {
		t.Errorf("region = %q", shared.Region)
	}
	if want := "cat /var/run/secrets/stsbind.dev/s3-reader/credentials.json"; shared.CredentialProcess != want {
		t.Errorf("credential_process = %q, want %q", shared.CredentialProcess, want)
	}
	if shared.Credentials.AccessKeyID != sample.AccessKeyID || shared.Credentials.SecretAccessKey != sample.SecretAccessKey ||
		shared.Credentials.SessionToken != sample.SessionToken {
		t.Errorf("credentials file does not carry the credentials")
	}

	var proc struct {
		Version                                   int
		AccessKeyID                               string `json:"AccessKeyId"`
		SecretAccessKey, SessionToken, Expiration string
	}
	dec := json.NewDecoder(strings.NewReader(string(data[credentials.KeyProcessJSON])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&proc); err != nil {
		t.Fatalf("credentials.json: %v", err)
	}
	if proc.Version != 1 || proc.AccessKeyID != sample.AccessKeyID || proc.Expiration != "2026-11-22T11:00:00Z" {
		t.Errorf("credentials.json = version %d, expiration %s", proc.Version, proc.Expiration)
	}
	if string(data[credentials.KeyExpiration]) != "2026-11-22T11:00:00Z" {
		t.Errorf("%s = %s", credentials.KeyExpiration, data[credentials.KeyExpiration])
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	data := credentials.SecretData(sample, "us-east-1", "b")
	got, err := credentials.FromProcessJSON(data[credentials.KeyProcessJSON])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sample, got); diff != "" {
		t.Errorf("FromProcessJSON (-want +got):\n%s", diff)
	}
}

func TestDataHash(t *testing.T) {
	t.Parallel()
	written := credentials.SecretData(sample, "us-east-1", "b")
	want := credentials.DataHash(written)
	tests := map[string]struct {
		edit func(map[string][]byte)
		same bool
	}{
		"as written":        {edit: func(map[string][]byte) {}, same: true},
		"key removed":       {edit: func(d map[string][]byte) { delete(d, credentials.KeyConfigFile) }},
		"key added":         {edit: func(d map[string][]byte) { d["extra"] = []byte("x") }},
		"access key edited": {edit: func(d map[string][]byte) { d[credentials.KeyAccessKeyID] = []byte("ASIAOTHER") }},
		"config edited":     {edit: func(d map[string][]byte) { d[credentials.KeyConfigFile] = []byte("[default]\n") }},
		"value emptied":     {edit: func(d map[string][]byte) { d[credentials.KeyProcessJSON] = nil }},
		"other region":      {edit: func(map[string][]byte) {}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data := credentials.SecretData(sample, "us-east-1", "b")
			tc.edit(data)
			if name == "other region" {
				data = credentials.SecretData(sample, "eu-west-1", "b")
			}
			if got := credentials.DataHash(data) == want; got != tc.same {
				t.Errorf("same hash = %v, want %v", got, tc.same)
			}
		})
	}
	// Where one key ends and its value begins is part of the hash.
	a := credentials.DataHash(map[string][]byte{"ab": []byte("c")})
	b := credentials.DataHash(map[string][]byte{"a": []byte("bc")})
	if a == b {
		t.Error("key/value boundaries are ambiguous")
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	if !sample.Valid(sample.Expiration.Add(-time.Second)) || sample.Valid(sample.Expiration) {
		t.Error("Valid must hold strictly before expiration")
	}
	if (credentials.Credentials{Expiration: sample.Expiration}).Valid(time.Time{}) {
		t.Error("empty credentials are valid")
	}
}
