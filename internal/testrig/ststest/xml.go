package ststest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"
	"time"
)

const xmlns = "https://sts.amazonaws.com/doc/2011-06-15/"

// envelope is <OperationResponse><OperationResult>…</OperationResult><ResponseMetadata>.
type envelope struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	Result    any
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

type credentialsXML struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

// withCredentials is embedded in every result that carries credentials.
type withCredentials struct {
	Credentials credentialsXML `xml:"Credentials"`
}

func (w *withCredentials) setCredentials(iss Issued) {
	w.Credentials = credentialsXML{iss.AccessKeyID, iss.SecretAccessKey, iss.SessionToken, iss.Expiration.Format(time.RFC3339)}
}

type assumedRoleUserXML struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

func assumedRoleUser(who identity) assumedRoleUserXML {
	return assumedRoleUserXML{Arn: who.arn, AssumedRoleID: who.userID}
}

type webIdentityResult struct {
	XMLName         xml.Name           `xml:"AssumeRoleWithWebIdentityResult"`
	Subject         string             `xml:"SubjectFromWebIdentityToken"`
	Audience        string             `xml:"Audience"`
	AssumedRoleUser assumedRoleUserXML `xml:"AssumedRoleUser"`
	withCredentials
	Provider string `xml:"Provider"`
}

type assumeRoleResult struct {
	XMLName         xml.Name           `xml:"AssumeRoleResult"`
	SourceIdentity  string             `xml:"SourceIdentity,omitempty"`
	AssumedRoleUser assumedRoleUserXML `xml:"AssumedRoleUser"`
	withCredentials
	PackedPolicySize *int `xml:"PackedPolicySize,omitempty"`
}

type federationTokenResult struct {
	XMLName xml.Name `xml:"GetFederationTokenResult"`
	withCredentials
	FederatedUser struct {
		Arn             string `xml:"Arn"`
		FederatedUserID string `xml:"FederatedUserId"`
	} `xml:"FederatedUser"`
	PackedPolicySize *int `xml:"PackedPolicySize,omitempty"`
}

type sessionTokenResult struct {
	XMLName xml.Name `xml:"GetSessionTokenResult"`
	withCredentials
}

type callerIdentityResult struct {
	XMLName xml.Name `xml:"GetCallerIdentityResult"`
	Arn     string   `xml:"Arn"`
	UserID  string   `xml:"UserId"`
	Account string   `xml:"Account"`
}

// setCredentials puts iss into a result that carries credentials.
func setCredentials(result any, iss Issued) {
	if r, ok := result.(interface{ setCredentials(Issued) }); ok {
		r.setCredentials(iss)
	}
}

func writeResult(w http.ResponseWriter, op string, result any) {
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(envelope{XMLName: xml.Name{Local: op + "Response"}, Xmlns: xmlns, Result: result, RequestID: requestID()})
}

type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func writeError(w http.ResponseWriter, f *Fault) {
	status := f.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	var e errorResponse
	e.Xmlns = xmlns
	e.Error.Type = "Sender"
	if status >= 500 {
		e.Error.Type = "Receiver"
	}
	e.Error.Code = f.Code
	e.Error.Message = f.Message
	e.RequestID = requestID()
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(e)
}

type claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"-"`
}

// tokenClaims reads iss, sub and aud from a JWT without verifying it: the
// fake's job is the protocol, MinIO's tests verify real tokens.
func tokenClaims(token string) claims {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}
	}
	var raw struct {
		claims
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &raw) != nil {
		return claims{}
	}
	c := raw.claims
	var one string
	var many []string
	if json.Unmarshal(raw.Aud, &one) == nil {
		c.Aud = one
	} else if json.Unmarshal(raw.Aud, &many) == nil {
		c.Aud = strings.Join(many, ",")
	}
	return c
}

// Audience returns the aud claim of a token (comma-joined when several).
func Audience(token string) string { return tokenClaims(token).Aud }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	s := base64.RawStdEncoding.EncodeToString(b) + hex.EncodeToString(b)
	return s[:n]
}

func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// uniqueID is an IAM-style unique id (AIDA…, AROA…): a prefix and 17
// characters, stable for the same name.
func uniqueID(prefix, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + base32.StdEncoding.EncodeToString(sum[:])[:17]
}
