// Package ststest is an in-process STS for tests. It speaks the STS query
// protocol (form POST in, XML out, AWS error documents), so the real
// aws-sdk-go-v2 code path runs against it. AssumeRoleWithWebIdentity is
// unsigned; AssumeRole, GetFederationToken, GetSessionToken and
// GetCallerIdentity verify SigV4 against the IAM user keys added with AddUser
// and the temporary credentials the server issued itself. Any AWS error code,
// latency and credential lifetime can be injected per role ARN or operation.
package ststest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// Operation names, as in the Action parameter. SetFault and SetLifetime take
// them as keys.
const (
	OpAssumeRoleWithWebIdentity = "AssumeRoleWithWebIdentity"
	OpAssumeRole                = "AssumeRole"
	OpGetFederationToken        = "GetFederationToken"
	OpGetSessionToken           = "GetSessionToken"
	OpGetCallerIdentity         = "GetCallerIdentity"
)

// Fault is an AWS error answer.
type Fault struct {
	Status  int    // HTTP status; 400 when zero
	Code    string // e.g. AccessDenied, Throttling
	Message string
	// Times limits how many calls get the fault; 0 means every call until cleared.
	Times int
}

// Call is one STS request as the server received it.
type Call struct {
	Operation         string // the Action, e.g. OpAssumeRole
	RoleARN           string // AssumeRole, AssumeRoleWithWebIdentity
	SessionName       string // RoleSessionName
	Token             string // WebIdentityToken
	DurationSeconds   int
	Policy            string
	PolicyARNs        []string
	ExternalID        string
	Tags              map[string]string // session tags as sent
	TransitiveTagKeys []string
	SourceIdentity    string
	FederatedName     string // GetFederationToken's Name
	// CallerAccessKeyID is the access key that signed the call (empty for
	// AssumeRoleWithWebIdentity, or without an Authorization header);
	// CallerARN is the identity the signature proved, empty when it did not.
	CallerAccessKeyID string
	CallerARN         string
	Region            string // of the signature's credential scope
	// Answered is the access key id of the credentials returned; empty when
	// none were (a fault, GetCallerIdentity).
	Answered string
	Error    string // the AWS error code returned, empty on success
	Time     time.Time
}

// Issued is a set of credentials the server handed out.
type Issued struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
	Operation                                  string
	// ARN is the session's identity, as GetCallerIdentity reports it.
	ARN string
	// Tags are the session's tags: those passed plus inherited transitive ones.
	Tags map[string]string
}

// Server is the fake STS.
type Server struct {
	URL string
	srv *httptest.Server

	mu         sync.Mutex
	latency    time.Duration
	lifetime   map[string]time.Duration // by role ARN or operation; "" for all
	faults     map[string]*Fault        // by role ARN or operation; "" for all
	maxSession map[string]time.Duration // by role ARN: the role's MaxSessionDuration
	keys       map[string]*accessKey    // every key the server trusts, by id
	calls      []Call
	issued     []Issued
	seq        int
}

// NewServer starts a server on 127.0.0.1.
func NewServer() *Server {
	s := &Server{lifetime: map[string]time.Duration{}, faults: map[string]*Fault{}, keys: map[string]*accessKey{}, maxSession: map[string]time.Duration{}}
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

// AddUser trusts an IAM user's long-term access key; the user's ARN is
// arn:aws:iam::<account>:user/<name>. A user may have several keys.
func (s *Server) AddUser(name, accessKeyID, secretAccessKey, account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[accessKeyID] = &accessKey{secret: secretAccessKey, who: identity{
		kind:    kindUser,
		arn:     fmt.Sprintf("arn:aws:iam::%s:user/%s", account, name),
		userID:  uniqueID("AIDA", account+"/"+name),
		account: account,
	}}
}

// DeleteAccessKey stops trusting a key, as after a rotation; its calls then
// get InvalidClientTokenId. It works for issued credentials too.
func (s *Server) DeleteAccessKey(accessKeyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, accessKeyID)
}

// SetLatency delays every answer.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetLifetime makes credentials expire d after they are issued, whatever
// duration was requested, for key: a role ARN, else an operation name (e.g.
// OpGetSessionToken), else "" for every call. The most specific key set wins;
// a zero d there means "as requested". Tests use seconds.
func (s *Server) SetLifetime(key string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime[key] = d
}

// SetMaxSession gives a role a MaxSessionDuration, as IAM does (default:
// none enforced here): AssumeRole and AssumeRoleWithWebIdentity asking for
// more get AWS's ValidationError. Zero removes it.
func (s *Server) SetMaxSession(roleARN string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == 0 {
		delete(s.maxSession, roleARN)
		return
	}
	s.maxSession[roleARN] = d
}

// overMaxSession is the fault for a request above the role's maximum.
func (s *Server) overMaxSession(rq *request) *Fault {
	s.mu.Lock()
	max, ok := s.maxSession[rq.RoleARN]
	s.mu.Unlock()
	if !ok || time.Duration(rq.DurationSeconds)*time.Second <= max {
		return nil
	}
	return &Fault{Code: "ValidationError", Message: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."}
}

// SetFault answers calls with f, keyed like SetLifetime: a role ARN (both
// AssumeRole operations), an operation name, or "" for every call; nil
// clears it. Faults come after authentication, before validation.
func (s *Server) SetFault(key string, f *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		delete(s.faults, key)
		return
	}
	c := *f
	s.faults[key] = &c
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

// OperationCalls returns the calls of one operation, e.g. OpGetCallerIdentity.
func (s *Server) OperationCalls(op string) []Call {
	var out []Call
	for _, c := range s.Calls("") {
		if c.Operation == op {
			out = append(out, c)
		}
	}
	return out
}

// CallCount is len(Calls(roleARN)) without the copy.
func (s *Server) CallCount(roleARN string) int {
	return s.count(func(c Call) bool { return roleARN == "" || c.RoleARN == roleARN })
}

// OperationCount is len(OperationCalls(op)) without the copy.
func (s *Server) OperationCount(op string) int {
	return s.count(func(c Call) bool { return c.Operation == op })
}

func (s *Server) count(match func(Call) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if match(c) {
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

// operation answers one authenticated call: the result element and, when it
// returns credentials, the identity they carry and the seconds they last
// unless SetLifetime says otherwise.
type operation func(s *Server, rq *request, caller identity) (result any, session *identity, seconds int, f *Fault)

var operations = map[string]operation{
	OpAssumeRoleWithWebIdentity: (*Server).assumeRoleWithWebIdentity,
	OpAssumeRole:                (*Server).assumeRole,
	OpGetFederationToken:        (*Server).getFederationToken,
	OpGetSessionToken:           (*Server).getSessionToken,
	OpGetCallerIdentity:         (*Server).getCallerIdentity,
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	form, perr := url.ParseQuery(string(body))
	if err != nil || perr != nil || r.Method != http.MethodPost {
		writeError(w, &Fault{Code: "InvalidAction", Message: "expected a form POST"})
		return
	}
	op, known := operations[form.Get("Action")]
	if !known {
		writeError(w, &Fault{Code: "InvalidAction", Message: fmt.Sprintf("action %q is not supported by ststest", form.Get("Action"))})
		return
	}
	rq := parseCall(form)

	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		time.Sleep(latency)
	}

	var caller identity
	var fault *Fault
	if rq.Operation != OpAssumeRoleWithWebIdentity { // unsigned, as at AWS
		caller, fault = s.authenticate(r, body, &rq.Call, time.Now())
		rq.CallerARN = caller.arn
	}
	if fault == nil {
		s.mu.Lock()
		fault = s.takeFault(rq.RoleARN, rq.Operation)
		s.mu.Unlock()
	}
	var result any
	var session *identity
	var seconds int
	if fault == nil {
		result, session, seconds, fault = op(s, &rq, caller)
	}
	if fault != nil {
		rq.Error = fault.Code
		s.record(rq.Call, Issued{})
		writeError(w, fault)
		return
	}
	var iss Issued
	if session != nil {
		iss = s.issue(&rq.Call, *session, seconds)
		setCredentials(result, iss)
		rq.Answered = iss.AccessKeyID
	}
	s.record(rq.Call, iss)
	writeResult(w, rq.Operation, result)
}

// takeFault returns the fault for the most specific key set; s.mu is held.
func (s *Server) takeFault(role, op string) *Fault {
	for _, key := range lookupKeys(role, op) {
		f, ok := s.faults[key]
		if !ok {
			continue
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
	return nil
}

// lookupKeys lists the SetFault/SetLifetime keys for a call, most specific first.
func lookupKeys(role, op string) []string {
	if role != "" {
		return []string{role, op, ""}
	}
	return []string{op, ""}
}

func (s *Server) record(c Call, iss Issued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	if iss.AccessKeyID != "" {
		s.issued = append(s.issued, iss)
	}
}
