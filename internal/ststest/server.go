// Package ststest is an in-process STS for tests. It speaks the STS query
// protocol (form POST in, XML out, AWS error documents), so the real
// aws-sdk-go-v2 code path runs against it, and it can inject any AWS error
// code, latency and credential lifetime, per role ARN.
package ststest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is an AWS error answer.
type Fault struct {
	Status  int    // HTTP status; 400 when zero
	Code    string // e.g. AccessDenied, Throttling
	Message string
	// Times limits how many calls get the fault; 0 means every call until cleared.
	Times int
}

// Call is one AssumeRoleWithWebIdentity request as the server received it.
type Call struct {
	RoleARN         string
	SessionName     string
	Token           string
	DurationSeconds int
	Policy          string
	PolicyARNs      []string
	// Answered is the access key id returned, empty when a fault was returned.
	Answered string
	Time     time.Time
}

// Issued is a set of credentials the server handed out.
type Issued struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
}

// Server is the fake STS.
type Server struct {
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	latency  time.Duration
	lifetime map[string]time.Duration // by role ARN; "" for all
	faults   map[string]*Fault        // by role ARN; "" for all
	calls    []Call
	issued   []Issued
	seq      int
}

// NewServer starts a server on 127.0.0.1.
func NewServer() *Server {
	s := &Server{lifetime: map[string]time.Duration{}, faults: map[string]*Fault{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("ststest: listen: %v", err))
	}
	s.srv.Listener = l
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetLatency delays every answer.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetLifetime makes credentials for roleARN ("" for every role) expire d after
// they are issued, whatever duration was requested. Tests use seconds.
func (s *Server) SetLifetime(roleARN string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime[roleARN] = d
}

// SetFault answers calls for roleARN ("" for every role) with f; nil clears it.
func (s *Server) SetFault(roleARN string, f *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		delete(s.faults, roleARN)
		return
	}
	c := *f
	s.faults[roleARN] = &c
}

// Calls returns the calls made for roleARN ("" for all).
func (s *Server) Calls(roleARN string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if roleARN == "" || c.RoleARN == roleARN {
			out = append(out, c)
		}
	}
	return out
}

// CallCount is len(Calls(roleARN)) without the copy.
func (s *Server) CallCount(roleARN string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if roleARN == "" {
		return len(s.calls)
	}
	n := 0
	for _, c := range s.calls {
		if c.RoleARN == roleARN {
			n++
		}
	}
	return n
}

// Issued returns every credential the server has handed out.
func (s *Server) Issued() []Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Issued(nil), s.issued...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		writeError(w, &Fault{Code: "InvalidAction", Message: "expected a form POST"})
		return
	}
	if a := r.PostForm.Get("Action"); a != "AssumeRoleWithWebIdentity" {
		writeError(w, &Fault{Code: "InvalidAction", Message: fmt.Sprintf("action %q is not supported by ststest", a)})
		return
	}
	call := Call{
		RoleARN:     r.PostForm.Get("RoleArn"),
		SessionName: r.PostForm.Get("RoleSessionName"),
		Token:       r.PostForm.Get("WebIdentityToken"),
		Policy:      r.PostForm.Get("Policy"),
		Time:        time.Now(),
	}
	call.DurationSeconds, _ = strconv.Atoi(r.PostForm.Get("DurationSeconds"))
	for i := 1; ; i++ {
		arn := r.PostForm.Get(fmt.Sprintf("PolicyArns.member.%d.arn", i))
		if arn == "" {
			break
		}
		call.PolicyARNs = append(call.PolicyARNs, arn)
	}

	s.mu.Lock()
	latency := s.latency
	fault := s.takeFault(call.RoleARN)
	lifetime, ok := s.lifetime[call.RoleARN]
	if !ok {
		lifetime = s.lifetime[""]
	}
	s.mu.Unlock()

	if latency > 0 {
		time.Sleep(latency)
	}
	claims := tokenClaims(call.Token)
	switch {
	case fault != nil:
	case call.Token == "":
		fault = &Fault{Code: "InvalidIdentityToken", Message: "no web identity token"}
	case call.RoleARN == "" || call.SessionName == "":
		fault = &Fault{Code: "ValidationError", Message: "RoleArn and RoleSessionName are required"}
	}
	if fault != nil {
		s.record(call, Issued{})
		writeError(w, fault)
		return
	}

	if lifetime == 0 {
		lifetime = time.Duration(call.DurationSeconds) * time.Second
	}
	if lifetime == 0 {
		lifetime = time.Hour
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	iss := Issued{
		AccessKeyID:     fmt.Sprintf("ASIA%016X", seq),
		SecretAccessKey: randomString(30),
		SessionToken:    "FwoG" + randomString(120),
		// STS reports whole seconds; round up so a one-second lifetime is not zero.
		Expiration: time.Now().Add(lifetime).Truncate(time.Second).Add(time.Second).UTC(),
	}
	call.Answered = iss.AccessKeyID
	s.record(call, iss)

	roleName := call.RoleARN[strings.LastIndex(call.RoleARN, "/")+1:]
	account := "123456789012"
	if parts := strings.Split(call.RoleARN, ":"); len(parts) > 4 && parts[4] != "" {
		account = parts[4]
	}
	resp := assumeResponse{Xmlns: "https://sts.amazonaws.com/doc/2011-06-15/"}
	res := &resp.Result
	res.Subject = claims.Sub
	res.Audience = claims.Aud
	res.Provider = claims.Iss
	res.AssumedRoleUser.Arn = fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", account, roleName, call.SessionName)
	res.AssumedRoleUser.AssumedRoleID = fmt.Sprintf("AROA%012d:%s", seq, call.SessionName)
	res.Credentials.AccessKeyID = iss.AccessKeyID
	res.Credentials.SecretAccessKey = iss.SecretAccessKey
	res.Credentials.SessionToken = iss.SessionToken
	res.Credentials.Expiration = iss.Expiration.Format(time.RFC3339)
	resp.RequestID = fmt.Sprintf("req-%d", seq)
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(resp)
}

func (s *Server) takeFault(role string) *Fault {
	key := role
	f, ok := s.faults[key]
	if !ok {
		key = ""
		f = s.faults[key]
	}
	if f == nil {
		return nil
	}
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, key)
		}
	}
	return &out
}

func (s *Server) record(c Call, iss Issued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	if iss.AccessKeyID != "" {
		s.issued = append(s.issued, iss)
	}
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

type assumeResponse struct {
	XMLName xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		Subject         string `xml:"SubjectFromWebIdentityToken"`
		Audience        string `xml:"Audience"`
		AssumedRoleUser struct {
			Arn           string `xml:"Arn"`
			AssumedRoleID string `xml:"AssumedRoleId"`
		} `xml:"AssumedRoleUser"`
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			SessionToken    string `xml:"SessionToken"`
			Expiration      string `xml:"Expiration"`
		} `xml:"Credentials"`
		Provider string `xml:"Provider"`
	} `xml:"AssumeRoleWithWebIdentityResult"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
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
	e.Xmlns = "https://sts.amazonaws.com/doc/2011-06-15/"
	e.Error.Type = "Sender"
	if status >= 500 {
		e.Error.Type = "Receiver"
	}
	e.Error.Code = f.Code
	e.Error.Message = f.Message
	e.RequestID = "req-error"
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(e)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	s := base64.RawStdEncoding.EncodeToString(b) + hex.EncodeToString(b)
	return s[:n]
}
