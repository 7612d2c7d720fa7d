package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The controller's API requests are counted where they arrive: the API
// server's audit log, at level Metadata, for controllerUser only. The
// controller is an unmodified binary in its own process, so its transport
// cannot be wrapped; the audit log sees every request it sends, each once,
// with its verb, resource and response code, and costs the controller
// nothing.

// auditPolicy logs the controller's requests and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["` + controllerUser + `"]
- level: None
`

// auditArgs writes the policy into dir and returns the kube-apiserver flags
// that log to dir/audit.log.
func auditArgs(dir string) (map[string]string, string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, "", err
	}
	log := filepath.Join(dir, "audit.log")
	return map[string]string{
		"audit-policy-file":   policy,
		"audit-log-path":      log,
		"audit-log-format":    "json",
		"audit-log-maxsize":   "0",
		"audit-log-maxbackup": "0",
	}, log, nil
}

// auditEvent holds the fields of an audit.k8s.io/v1 Event the count needs.
type auditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// auditCounter reads the audit log as it grows.
type auditCounter struct {
	path    string
	offset  int64
	partial []byte
	// started holds long-running requests (watches) already counted at
	// ResponseStarted; their ResponseComplete comes when they end.
	started map[string]bool
}

func newAuditCounter(path string) *auditCounter {
	return &auditCounter{path: path, started: map[string]bool{}}
}

// requests counts the controller's requests logged since the last call, by
// "verb resource[/subresource]" (a path for non-resource requests), with
// " <code>" appended for an answer of 300 or more.
func (a *auditCounter) requests() (requestCounts, error) {
	f, err := os.Open(a.path)
	if os.IsNotExist(err) {
		return requestCounts{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	a.offset += int64(len(raw))
	raw = append(a.partial, raw...)
	last := bytes.LastIndexByte(raw, '\n')
	a.partial = append([]byte(nil), raw[last+1:]...)
	counts := requestCounts{}
	for _, line := range bytes.Split(raw[:last+1], []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("audit log %s: %w", a.path, err)
		}
		if e.User.Username != controllerUser {
			continue
		}
		switch e.Stage {
		case "ResponseStarted":
			a.started[e.AuditID] = true
		case "ResponseComplete", "Panic":
			if a.started[e.AuditID] {
				delete(a.started, e.AuditID)
				continue
			}
		default:
			continue
		}
		counts[e.key()]++
	}
	return counts, nil
}

func (e auditEvent) key() string {
	what := e.RequestURI
	if r := e.ObjectRef; r != nil && r.Resource != "" {
		what = r.Resource
		if r.Subresource != "" {
			what += "/" + r.Subresource
		}
	} else if path, _, ok := strings.Cut(what, "?"); ok {
		what = path
	}
	k := e.Verb + " " + what
	if e.ResponseStatus != nil && e.ResponseStatus.Code >= 300 {
		k += fmt.Sprintf(" %d", e.ResponseStatus.Code)
	}
	return k
}

// requestCounts are API requests by "verb resource[/subresource][ code]".
type requestCounts map[string]int

// perProcess tells the requests whose number does not grow with the
// bindings: discovery, the caches' lists and watches, the TokenReview of
// each audience (one per worker that finds no verdict yet at startup, then
// one an hour) and the providers' status.
func perProcess(key string) bool {
	verb, what, _ := strings.Cut(key, " ")
	return verb == "list" || verb == "watch" || strings.HasPrefix(what, "/") ||
		strings.HasPrefix(what, "tokenreviews") || strings.HasPrefix(what, "clusterstsproviders")
}

// sum adds the requests that match.
func (c requestCounts) sum(match func(key string) bool) int {
	n := 0
	for k, v := range c {
		if match(k) {
			n += v
		}
	}
	return n
}

// perBinding counts the requests that grow with the bindings.
func (c requestCounts) perBinding() int {
	return c.sum(func(k string) bool { return !perProcess(k) })
}

// writes counts the writes to resource ("" for any).
func (c requestCounts) writes(resource string) int {
	return c.sum(func(k string) bool {
		verb, what, _ := strings.Cut(k, " ")
		what, _, _ = strings.Cut(what, " ")
		switch verb {
		case "create", "update", "patch", "delete", "deletecollection":
			return resource == "" || what == resource
		}
		return false
	})
}

// reads counts the gets and lists that grow with the bindings.
func (c requestCounts) reads() int {
	return c.sum(func(k string) bool { return strings.HasPrefix(k, "get ") && !perProcess(k) })
}

// String lists the counts in order, for the log.
func (c requestCounts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, c[k])
	}
	return "{" + b.String() + "}"
}
