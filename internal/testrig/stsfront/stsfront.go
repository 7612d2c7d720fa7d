// Package stsfront is an STS in front of MinIO for rotation tests: the first
// credentials of a planned session stop working at a cutoff and declare a
// short Expiration, so a rotation can be forced without sleeping out
// MinIO's 15-minute minimum session.
package stsfront

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Front is an STS in front of MinIO for rotation tests: it forwards
// every request unchanged, except the first successful
// AssumeRoleWithWebIdentity of a session name given a Plan. That call gets
// a session policy that MinIO stops honouring at the plan's cutoff
// (aws:CurrentTime), and its answer declares the plan's expiration instead
// of MinIO's, so clients re-read their credentials without anyone sleeping
// out the 15-minute minimum session. Later calls of that session (the
// refresh) pass through: real, long-lived credentials.
type Front struct {
	// URL is http://<host>:<port>.
	URL string

	srv    *http.Server
	target *url.URL
	mu     sync.Mutex
	plans  map[string]*Plan // by RoleSessionName
}

// Plan is what the first credentials of a session carry.
type Plan struct {
	// Cutoff is when MinIO stops accepting them.
	Cutoff time.Time
	// Expiration is the Expiration declared to the controller (and so
	// written into the Secret); zero keeps MinIO's.
	Expiration time.Time

	// ReplayUntil (WebIdentity mode, where every process of a pod calls STS
	// itself): until then every later call of the session that MinIO
	// answers (each token is still verified there) gets the first answer
	// again, so all of them hold the same cut-off credentials; from then on
	// calls pass through. Zero: only the first call is planned.
	ReplayUntil time.Time

	// Issued is the access key id answered, once the plan is used.
	Issued string
	// answer is the first answer, replayed until ReplayUntil.
	answer []byte
	// later are the access key ids MinIO answered to the session's calls
	// after the plan was used and no longer replayed.
	later []string
}

var expirationElement = regexp.MustCompile(`<Expiration>[^<]*</Expiration>`)
var accessKeyElement = regexp.MustCompile(`<AccessKeyId>([^<]*)</AccessKeyId>`)

// Start starts a front for the MinIO at minioURL, listening on a free port
// of host (127.0.0.1, or the real node's bridge address where pods reach it).
func Start(host, minioURL string) (*Front, error) {
	target, err := url.Parse(minioURL)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	f := &Front{URL: "http://" + l.Addr().String(), target: target, plans: map[string]*Plan{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(w, r, rp) })}
	go func() { _ = f.srv.Serve(l) }()
	return f, nil
}

// Close stops the front.
func (f *Front) Close() { _ = f.srv.Close() }

// SetPlan applies p to the next successful AssumeRoleWithWebIdentity of the
// session name.
func (f *Front) SetPlan(sessionName string, p Plan) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans[sessionName] = &p
}

// Issued is the access key id the plan of the session name was used for;
// empty until then.
func (f *Front) Issued(sessionName string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.plans[sessionName]; p != nil {
		return p.Issued
	}
	return ""
}

// Later is every access key id MinIO issued to the session name after its
// plan was used (and, with ReplayUntil, no longer replayed).
func (f *Front) Later(sessionName string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.plans[sessionName]; p != nil {
		return append([]string(nil), p.later...)
	}
	return nil
}

var secretKeyElement = regexp.MustCompile(`<SecretAccessKey>([^<]*)</SecretAccessKey>`)
var sessionTokenElement = regexp.MustCompile(`<SessionToken>([^<]*)</SessionToken>`)

// First is the planned (cut-off) credentials of the session name, once
// issued: for a control that they stop working.
func (f *Front) First(sessionName string) (accessKeyID, secretAccessKey, sessionToken string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.plans[sessionName]
	if p == nil || p.answer == nil {
		return "", "", ""
	}
	get := func(re *regexp.Regexp) string {
		if m := re.FindSubmatch(p.answer); m != nil {
			return string(m[1])
		}
		return ""
	}
	return p.Issued, get(secretKeyElement), get(sessionTokenElement)
}

// CutoffPolicy allows everything in S3 until cutoff.
func CutoffPolicy(cutoff time.Time) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"],`+
		`"Condition":{"DateLessThan":{"aws:CurrentTime":"%s"}}}]}`, cutoff.UTC().Format(time.RFC3339))
}

func (f *Front) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form, _ := url.ParseQuery(string(body))
	var plan, used *Plan
	replay := false
	if r.Method == http.MethodPost && form.Get("Action") == "AssumeRoleWithWebIdentity" {
		f.mu.Lock()
		switch p := f.plans[form.Get("RoleSessionName")]; {
		case p == nil:
		case p.Issued == "":
			plan = p
		default:
			used, replay = p, time.Now().Before(p.ReplayUntil)
		}
		f.mu.Unlock()
	}
	if used != nil {
		f.afterPlan(w, r, body, used, replay)
		return
	}
	if plan == nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
		return
	}
	if form.Get("Policy") != "" {
		http.Error(w, "stsfront: a planned session must not carry its own policy", http.StatusBadRequest)
		return
	}
	form.Set("Policy", CutoffPolicy(plan.Cutoff))
	encoded := form.Encode()
	resp, answer, ok := f.forward(w, r, []byte(encoded))
	if !ok {
		return
	}
	if resp.StatusCode == http.StatusOK {
		if !plan.Expiration.IsZero() {
			answer = expirationElement.ReplaceAll(answer, []byte("<Expiration>"+plan.Expiration.UTC().Format(time.RFC3339)+"</Expiration>"))
		}
		if m := accessKeyElement.FindSubmatch(answer); m != nil {
			f.mu.Lock()
			plan.Issued, plan.answer = string(m[1]), answer
			f.mu.Unlock()
		}
	}
	writeAnswer(w, resp, answer)
}

// afterPlan forwards a later call of a planned session to MinIO unchanged;
// while replaying, a successful answer is replaced by the plan's first one,
// otherwise the access key id answered is recorded.
func (f *Front) afterPlan(w http.ResponseWriter, r *http.Request, body []byte, p *Plan, replay bool) {
	resp, answer, ok := f.forward(w, r, body)
	if !ok {
		return
	}
	if resp.StatusCode == http.StatusOK {
		f.mu.Lock()
		if replay {
			answer = p.answer
		} else if m := accessKeyElement.FindSubmatch(answer); m != nil {
			p.later = append(p.later, string(m[1]))
		}
		f.mu.Unlock()
	}
	writeAnswer(w, resp, answer)
}

func writeAnswer(w http.ResponseWriter, resp *http.Response, answer []byte) {
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// forward sends body to MinIO with r's path and headers and returns the
// answer; when that fails it has answered w itself and ok is false.
func (f *Front) forward(w http.ResponseWriter, r *http.Request, body []byte) (resp *http.Response, answer []byte, ok bool) {
	out, err := http.NewRequestWithContext(r.Context(), http.MethodPost, f.target.String()+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, nil, false
	}
	out.Header = r.Header.Clone()
	out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp, err = http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil, nil, false
	}
	defer resp.Body.Close()
	if answer, err = io.ReadAll(resp.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil, nil, false
	}
	return resp, answer, true
}
