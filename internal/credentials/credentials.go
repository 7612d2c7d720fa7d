// Package credentials renders temporary AWS credentials into the formats the
// Secret carries, and reads them back.
//
// Every key is derived from the same four values; DataHash fingerprints the
// whole so that an edited Secret can be told apart.
package credentials

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Secret data keys.
const (
	KeyAccessKeyID     = "AWS_ACCESS_KEY_ID"
	KeySecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	KeySessionToken    = "AWS_SESSION_TOKEN"
	KeyExpiration      = "AWS_CREDENTIAL_EXPIRATION"
	KeyCredentialsFile = "credentials"
	KeyConfigFile      = "config"
	KeyProcessJSON     = "credentials.json"
)

// MountRoot is where the webhook mounts each binding's Secret, one directory
// per binding.
const MountRoot = "/var/run/secrets/stsbind.dev"

// MountDir is the directory a binding's Secret is mounted at in Files mode.
func MountDir(binding string) string {
	return path.Join(MountRoot, binding)
}

// Credentials are temporary AWS credentials as STS returned them.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// Valid reports whether the credentials are complete and unexpired at now.
func (c Credentials) Valid(now time.Time) bool {
	return c.AccessKeyID != "" && c.SecretAccessKey != "" && c.SessionToken != "" && now.Before(c.Expiration)
}

// processCredentials is the credential_process output format (Version 1).
type processCredentials struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	SessionToken    string `json:"SessionToken"`
	Expiration      string `json:"Expiration"`
}

// SecretData renders every key of the credentials Secret. binding names the
// Files-mode mount directory the config file's credential_process reads from.
func SecretData(c Credentials, region, binding string) map[string][]byte {
	exp := c.Expiration.UTC().Format(time.RFC3339)
	process, _ := json.MarshalIndent(processCredentials{
		Version:         1,
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		Expiration:      exp,
	}, "", "  ")

	var creds strings.Builder
	creds.WriteString("[default]\n")
	fmt.Fprintf(&creds, "aws_access_key_id = %s\n", c.AccessKeyID)
	fmt.Fprintf(&creds, "aws_secret_access_key = %s\n", c.SecretAccessKey)
	fmt.Fprintf(&creds, "aws_session_token = %s\n", c.SessionToken)

	var config strings.Builder
	config.WriteString("[default]\n")
	if region != "" {
		fmt.Fprintf(&config, "region = %s\n", region)
	}
	fmt.Fprintf(&config, "credential_process = cat %s\n", path.Join(MountDir(binding), KeyProcessJSON))

	return map[string][]byte{
		KeyAccessKeyID:     []byte(c.AccessKeyID),
		KeySecretAccessKey: []byte(c.SecretAccessKey),
		KeySessionToken:    []byte(c.SessionToken),
		KeyExpiration:      []byte(exp),
		KeyCredentialsFile: []byte(creds.String()),
		KeyConfigFile:      []byte(config.String()),
		KeyProcessJSON:     append(process, '\n'),
	}
}

// FromProcessJSON reads the credentials from the credentials.json key, the
// file the Endpoint sidecar and credential_process serve.
func FromProcessJSON(b []byte) (Credentials, error) {
	var p processCredentials
	if err := json.Unmarshal(b, &p); err != nil {
		return Credentials{}, fmt.Errorf("parsing %s: %w", KeyProcessJSON, err)
	}
	exp, err := time.Parse(time.RFC3339, p.Expiration)
	if err != nil {
		return Credentials{}, fmt.Errorf("%s Expiration: %w", KeyProcessJSON, err)
	}
	c := Credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.SecretAccessKey, SessionToken: p.SessionToken, Expiration: exp}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.SessionToken == "" {
		return Credentials{}, fmt.Errorf("%s lacks AccessKeyId, SecretAccessKey or SessionToken", KeyProcessJSON)
	}
	return c, nil
}

// DataHash is a SHA-256 over a Secret's keys and values, independent of map
// order. The controller records it when it writes a Secret, so that it can
// tell an edited Secret apart without keeping the data itself in memory.
func DataHash(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(data[k]))
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
