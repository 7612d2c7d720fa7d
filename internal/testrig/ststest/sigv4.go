package ststest

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

type kind int

const (
	kindUser        kind = iota // an IAM user's long-term key
	kindUserSession             // GetSessionToken: still the user
	kindRole                    // an assumed-role session
	kindFederated               // GetFederationToken
)

// identity is who a key signs as.
type identity struct {
	kind                 kind
	arn, userID, account string
	sourceIdentity       string
	tags                 map[string]string // the session's tags
	// transitive are the session tags a role chained from this session inherits.
	transitive map[string]string
}

// accessKey is a key the server trusts: an IAM user's (no token, no
// expiry) or one it issued.
type accessKey struct {
	secret, token string
	expires       time.Time
	who           identity
}

const (
	amzDateFormat = "20060102T150405Z"
	maxClockSkew  = 15 * time.Minute
)

var (
	errInvalidToken = &Fault{Status: http.StatusForbidden, Code: "InvalidClientTokenId", Message: "The security token included in the request is invalid."}
	errBadSignature = &Fault{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch", Message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}
)

// authenticate verifies the request's SigV4 Authorization header by
// recomputing the signature with the secret the server holds for its key.
// It fills the call's CallerAccessKeyID and Region as soon as they are read.
func (s *Server) authenticate(r *http.Request, body []byte, c *Call, now time.Time) (identity, *Fault) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return identity{}, &Fault{Status: http.StatusForbidden, Code: "MissingAuthenticationToken", Message: "Request is missing Authentication Token"}
	}
	a, ok := parseAuthorization(header)
	if !ok {
		return identity{}, &Fault{Code: "IncompleteSignature", Message: "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters: " + header}
	}
	c.CallerAccessKeyID, c.Region = a.keyID, a.region

	s.mu.Lock()
	k, known := s.keys[a.keyID]
	var key accessKey
	if known {
		key = *k
	}
	s.mu.Unlock()
	token := r.Header.Get("X-Amz-Security-Token")
	switch {
	case !known:
		return identity{}, errInvalidToken
	case subtle.ConstantTimeCompare([]byte(token), []byte(key.token)) != 1:
		// A temporary key without its token, with another's, or a long-term key with one.
		return identity{}, errInvalidToken
	case key.token != "" && !now.Before(key.expires):
		return identity{}, &Fault{Code: "ExpiredToken", Message: "The security token included in the request is expired"}
	}

	signed, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	switch {
	case err != nil:
		return identity{}, &Fault{Code: "IncompleteSignature", Message: "Authorization header requires existence of a valid 'X-Amz-Date' header."}
	case a.service != "sts" || a.date != signed.Format("20060102"):
		return identity{}, &Fault{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch", Message: "Credential should be scoped to correct service: 'sts' and to the date of X-Amz-Date."}
	case !slices.Contains(a.signedHeaders, "host"):
		return identity{}, &Fault{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch", Message: "The host header must be signed."}
	case signed.Before(now.Add(-maxClockSkew)) || signed.After(now.Add(maxClockSkew)):
		return identity{}, &Fault{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch", Message: "Signature expired: " + signed.Format(amzDateFormat) +
			" is outside 15 minutes of the server's time " + now.UTC().Format(amzDateFormat) + "."}
	}
	scope := strings.Join([]string{a.date, a.region, a.service, "aws4_request"}, "/")
	stringToSign := strings.Join([]string{"AWS4-HMAC-SHA256", r.Header.Get("X-Amz-Date"), scope, sha256Hex([]byte(canonicalRequest(r, a.signedHeaders, body)))}, "\n")
	signingKey := []byte("AWS4" + key.secret)
	for _, part := range []string{a.date, a.region, a.service, "aws4_request"} {
		signingKey = hmacSHA256(signingKey, part)
	}
	want := hex.EncodeToString(hmacSHA256(signingKey, stringToSign))
	if !hmac.Equal([]byte(want), []byte(a.signature)) {
		return identity{}, errBadSignature
	}
	return key.who, nil
}

type authorization struct {
	keyID, date, region, service string
	signedHeaders                []string
	signature                    string
}

// parseAuthorization reads "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
// SignedHeaders=a;b, Signature=hex".
func parseAuthorization(h string) (authorization, bool) {
	alg, rest, _ := strings.Cut(h, " ")
	if alg != "AWS4-HMAC-SHA256" {
		return authorization{}, false
	}
	var a authorization
	for _, field := range strings.Split(rest, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch name {
		case "Credential":
			parts := strings.Split(value, "/")
			if len(parts) != 5 || parts[4] != "aws4_request" {
				return authorization{}, false
			}
			a.keyID, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(value, ";")
		case "Signature":
			a.signature = value
		}
	}
	return a, a.keyID != "" && a.signature != "" && len(a.signedHeaders) > 0
}

// canonicalRequest is SigV4's canonical form of r over the headers the
// client signed; the payload hash is always of the body received.
func canonicalRequest(r *http.Request, signedHeaders []string, body []byte) string {
	var headers strings.Builder
	for _, name := range signedHeaders {
		var values []string
		switch name {
		case "host": // net/http moves these out of r.Header
			values = []string{r.Host}
		case "content-length":
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			values = slices.Clone(r.Header.Values(name))
		}
		for i, v := range values {
			values[i] = strings.Join(strings.Fields(v), " ")
		}
		headers.WriteString(name + ":" + strings.Join(values, ",") + "\n")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	return strings.Join([]string{r.Method, path, canonicalQuery(r.URL.Query()), headers.String(),
		strings.Join(signedHeaders, ";"), sha256Hex(body)}, "\n")
}

func canonicalQuery(q url.Values) string {
	var pairs [][2]string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, [2]string{awsEscape(k), awsEscape(v)})
		}
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1])) })
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p[0] + "=" + p[1]
	}
	return strings.Join(out, "&")
}

func awsEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
