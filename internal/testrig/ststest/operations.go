package ststest

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// request is a call with its session tags in the order sent, duplicates kept.
type request struct {
	Call
	tags [][2]string
}

// parseCall reads every parameter of the five operations.
func parseCall(form url.Values) request {
	rq := request{Call: Call{
		Operation:      form.Get("Action"),
		RoleARN:        form.Get("RoleArn"),
		SessionName:    form.Get("RoleSessionName"),
		Token:          form.Get("WebIdentityToken"),
		Policy:         form.Get("Policy"),
		ExternalID:     form.Get("ExternalId"),
		SourceIdentity: form.Get("SourceIdentity"),
		FederatedName:  form.Get("Name"),
		Time:           time.Now(),
	}}
	rq.DurationSeconds, _ = strconv.Atoi(form.Get("DurationSeconds"))
	rq.PolicyARNs = members(form, "PolicyArns.member.%d.arn")
	rq.TransitiveTagKeys = members(form, "TransitiveTagKeys.member.%d")
	for i := 1; form.Has(fmt.Sprintf("Tags.member.%d.Key", i)); i++ {
		k, v := form.Get(fmt.Sprintf("Tags.member.%d.Key", i)), form.Get(fmt.Sprintf("Tags.member.%d.Value", i))
		rq.tags = append(rq.tags, [2]string{k, v})
		if rq.Tags == nil {
			rq.Tags = map[string]string{}
		}
		rq.Tags[k] = v
	}
	return rq
}

// members reads a query-protocol list, format holding the 1-based index.
func members(form url.Values, format string) []string {
	var out []string
	for i := 1; form.Has(fmt.Sprintf(format, i)); i++ {
		out = append(out, form.Get(fmt.Sprintf(format, i)))
	}
	return out
}

func (s *Server) assumeRoleWithWebIdentity(rq *request, _ identity) (any, *identity, int, *Fault) {
	switch {
	case rq.Token == "":
		return nil, nil, 0, &Fault{Code: "InvalidIdentityToken", Message: "no web identity token"}
	case rq.RoleARN == "" || rq.SessionName == "":
		return nil, nil, 0, &Fault{Code: "ValidationError", Message: "RoleArn and RoleSessionName are required"}
	}
	if f := s.overMaxSession(rq); f != nil {
		return nil, nil, 0, f
	}
	claims := tokenClaims(rq.Token)
	who := roleSession(rq.RoleARN, rq.SessionName)
	res := &webIdentityResult{Subject: claims.Sub, Audience: claims.Aud, Provider: claims.Iss, AssumedRoleUser: assumedRoleUser(who)}
	return res, &who, cmp.Or(rq.DurationSeconds, 3600), nil
}

// assumeRole: a session calling it is role chaining, limited to one hour;
// AWS counts GetSessionToken sessions too (aws-runas #11). A chained role
// inherits the transitive tags and the source identity.
func (s *Server) assumeRole(rq *request, caller identity) (any, *identity, int, *Fault) {
	if caller.kind == kindFederated {
		return nil, nil, 0, notAuthorized(caller, rq.Operation, rq.RoleARN)
	}
	f := cmp.Or(
		checkRoleARN(rq.RoleARN),
		checkString("roleSessionName", rq.SessionName, 2, 64, namePattern),
		checkDuration(rq.DurationSeconds, 43200),
		checkOptional("externalId", rq.ExternalID, 2, 1224, externalIDPattern),
		checkOptional("sourceIdentity", rq.SourceIdentity, 2, 64, namePattern),
		s.overMaxSession(rq),
	)
	if f == nil && caller.kind != kindUser && rq.DurationSeconds > 3600 {
		f = &Fault{Code: "ValidationError", Message: "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."}
	}
	if f == nil && caller.sourceIdentity != "" && rq.SourceIdentity != "" && rq.SourceIdentity != caller.sourceIdentity {
		f = &Fault{Code: "ValidationError", Message: fmt.Sprintf("SourceIdentity %q cannot change the source identity %q the calling session carries.", rq.SourceIdentity, caller.sourceIdentity)}
	}
	who := roleSession(rq.RoleARN, rq.SessionName)
	var packed *int
	if f == nil {
		who.tags, who.transitive, f = sessionTags(rq, caller.transitive)
	}
	if f == nil {
		packed, f = packedPolicySize(rq.Policy, rq.PolicyARNs, rq.tags)
	}
	if f != nil {
		return nil, nil, 0, f
	}
	who.sourceIdentity = cmp.Or(caller.sourceIdentity, rq.SourceIdentity)
	res := &assumeRoleResult{SourceIdentity: who.sourceIdentity, AssumedRoleUser: assumedRoleUser(who), PackedPolicySize: packed}
	return res, &who, cmp.Or(rq.DurationSeconds, 3600), nil
}

func (s *Server) getFederationToken(rq *request, caller identity) (any, *identity, int, *Fault) {
	if caller.kind != kindUser {
		return nil, nil, 0, &Fault{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Cannot call GetFederationToken with session credentials"}
	}
	f := cmp.Or(
		checkString("name", rq.FederatedName, 2, 32, namePattern),
		checkDuration(rq.DurationSeconds, 129600),
	)
	who := identity{
		kind:    kindFederated,
		arn:     fmt.Sprintf("arn:aws:sts::%s:federated-user/%s", caller.account, rq.FederatedName),
		userID:  caller.account + ":" + rq.FederatedName,
		account: caller.account,
	}
	if f == nil && len(rq.TransitiveTagKeys) > 0 {
		f = &Fault{Code: "ValidationError", Message: "GetFederationToken takes no TransitiveTagKeys."}
	}
	var packed *int
	if f == nil {
		who.tags, _, f = sessionTags(rq, nil)
	}
	if f == nil {
		packed, f = packedPolicySize(rq.Policy, rq.PolicyARNs, rq.tags)
	}
	if f != nil {
		return nil, nil, 0, f
	}
	res := &federationTokenResult{PackedPolicySize: packed}
	res.FederatedUser.Arn, res.FederatedUser.FederatedUserID = who.arn, who.userID
	return res, &who, cmp.Or(rq.DurationSeconds, 43200), nil
}

func (s *Server) getSessionToken(rq *request, caller identity) (any, *identity, int, *Fault) {
	if caller.kind != kindUser {
		return nil, nil, 0, &Fault{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Cannot call GetSessionToken with session credentials"}
	}
	if f := checkDuration(rq.DurationSeconds, 129600); f != nil {
		return nil, nil, 0, f
	}
	who := caller // the session still is the user
	who.kind = kindUserSession
	return &sessionTokenResult{}, &who, cmp.Or(rq.DurationSeconds, 43200), nil
}

func (s *Server) getCallerIdentity(_ *request, caller identity) (any, *identity, int, *Fault) {
	return &callerIdentityResult{Arn: caller.arn, UserID: caller.userID, Account: caller.account}, nil, 0, nil
}

// issue mints credentials for who and trusts them until they expire.
func (s *Server) issue(c *Call, who identity, seconds int) Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	lifetime := time.Duration(seconds) * time.Second
	for _, key := range lookupKeys(c.RoleARN, c.Operation) {
		if d, ok := s.lifetime[key]; ok {
			if d != 0 {
				lifetime = d
			}
			break
		}
	}
	s.seq++
	iss := Issued{
		AccessKeyID:     fmt.Sprintf("ASIA%016X", s.seq),
		SecretAccessKey: randomString(40),
		SessionToken:    "FwoG" + randomString(120),
		// STS reports whole seconds; round up so a one-second lifetime is not zero.
		Expiration: time.Now().Add(lifetime).Truncate(time.Second).Add(time.Second).UTC(),
		Operation:  c.Operation,
		ARN:        who.arn,
		Tags:       maps.Clone(who.tags),
	}
	s.keys[iss.AccessKeyID] = &accessKey{secret: iss.SecretAccessKey, token: iss.SessionToken, expires: iss.Expiration, who: who}
	return iss
}

// roleSession is the identity of a session of roleARN; a role's id is stable.
func roleSession(roleARN, session string) identity {
	name := roleARN[strings.LastIndex(roleARN, "/")+1:]
	account := roleAccount(roleARN)
	return identity{
		kind:    kindRole,
		arn:     fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", account, name, session),
		userID:  uniqueID("AROA", roleARN) + ":" + session,
		account: account,
	}
}

// roleAccount is the account of a role ARN, 123456789012 when it has none.
func roleAccount(roleARN string) string {
	if parts := strings.Split(roleARN, ":"); len(parts) > 4 && parts[4] != "" {
		return parts[4]
	}
	return "123456789012"
}

func notAuthorized(caller identity, op, resource string) *Fault {
	return &Fault{Status: http.StatusForbidden, Code: "AccessDenied",
		Message: fmt.Sprintf("User: %s is not authorized to perform: sts:%s on resource: %s", caller.arn, op, resource)}
}
