package ststest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"unicode/utf8"
)

// STS's documented parameter patterns.
var (
	namePattern       = regexp.MustCompile(`^[\w+=,.@-]*$`)
	externalIDPattern = regexp.MustCompile(`^[\w+=,.@:/-]*$`)
	tagPattern        = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
	roleARNPattern    = regexp.MustCompile(`^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)
)

const (
	maxPolicyChars = 2048
	// packedLimit is the fake's packed size limit: plaintext bytes of the
	// policy, policy ARNs and tags count against it, where AWS compresses.
	packedLimit = 4096
)

func invalid(field, value, constraint string) *Fault {
	return &Fault{Code: "ValidationError", Message: fmt.Sprintf(
		"1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s", value, field, constraint)}
}

func checkString(field, value string, minLen, maxLen int, pattern *regexp.Regexp) *Fault {
	n := utf8.RuneCountInString(value)
	switch {
	case n < minLen:
		return invalid(field, value, fmt.Sprintf("Member must have length greater than or equal to %d", minLen))
	case n > maxLen:
		return invalid(field, value, fmt.Sprintf("Member must have length less than or equal to %d", maxLen))
	case pattern != nil && !pattern.MatchString(value):
		p := strings.TrimSuffix(strings.TrimPrefix(pattern.String(), "^"), "$")
		return invalid(field, value, "Member must satisfy regular expression pattern: "+p)
	}
	return nil
}

// checkOptional is checkString for a parameter that may be left out.
func checkOptional(field, value string, minLen, maxLen int, pattern *regexp.Regexp) *Fault {
	if value == "" {
		return nil
	}
	return checkString(field, value, minLen, maxLen, pattern)
}

// checkDuration: 0 is "not sent", the operation's default.
func checkDuration(seconds, maxSeconds int) *Fault {
	switch {
	case seconds == 0:
		return nil
	case seconds < 900:
		return invalid("durationSeconds", fmt.Sprint(seconds), "Member must have value greater than or equal to 900")
	case seconds > maxSeconds:
		return invalid("durationSeconds", fmt.Sprint(seconds), fmt.Sprintf("Member must have value less than or equal to %d", maxSeconds))
	}
	return nil
}

func checkRoleARN(arn string) *Fault {
	if f := checkString("roleArn", arn, 20, 2048, nil); f != nil {
		return f
	}
	if !roleARNPattern.MatchString(arn) {
		return &Fault{Code: "ValidationError", Message: fmt.Sprintf("%s is not a valid IAM role ARN", arn)}
	}
	return nil
}

// sessionTags checks the tags sent and returns the session's tags (the
// inherited transitive ones plus those sent) and its transitive tags. Tag
// keys are case-insensitive; an inherited transitive key cannot be sent again.
func sessionTags(rq *request, inherited map[string]string) (all, transitive map[string]string, f *Fault) {
	if len(rq.tags) > 50 {
		return nil, nil, invalid("tags", fmt.Sprintf("%d tags", len(rq.tags)), "Member must have length less than or equal to 50")
	}
	if len(rq.TransitiveTagKeys) > 50 {
		return nil, nil, invalid("transitiveTagKeys", fmt.Sprintf("%d keys", len(rq.TransitiveTagKeys)), "Member must have length less than or equal to 50")
	}
	seen := map[string]string{} // lower-case key -> key as sent
	for k := range inherited {
		seen[strings.ToLower(k)] = k
	}
	all = maps.Clone(inherited)
	for _, kv := range rq.tags {
		if f := cmp.Or(checkString("tags.member.key", kv[0], 1, 128, tagPattern), checkString("tags.member.value", kv[1], 0, 256, tagPattern)); f != nil {
			return nil, nil, f
		}
		if prev, dup := seen[strings.ToLower(kv[0])]; dup {
			if _, inh := inherited[prev]; inh {
				return nil, nil, &Fault{Code: "ValidationError", Message: fmt.Sprintf("Session tag %q has the key of the transitive tag %q the calling session inherited.", kv[0], prev)}
			}
			return nil, nil, &Fault{Code: "ValidationError", Message: "Duplicate tag keys found. Please note that Tag keys are case insensitive."}
		}
		seen[strings.ToLower(kv[0])] = kv[0]
		if all == nil {
			all = map[string]string{}
		}
		all[kv[0]] = kv[1]
	}
	transitive = maps.Clone(inherited)
	for _, k := range rq.TransitiveTagKeys {
		v, ok := rq.Tags[k]
		if !ok {
			return nil, nil, &Fault{Code: "ValidationError", Message: fmt.Sprintf("Transitive tag key %q is not among the session tags passed.", k)}
		}
		if transitive == nil {
			transitive = map[string]string{}
		}
		transitive[k] = v
	}
	return all, transitive, nil
}

// packedPolicySize checks the session policy and policy ARNs and answers the
// PackedPolicySize percentage; nil when nothing was packed.
func packedPolicySize(policy string, arns []string, tags [][2]string) (*int, *Fault) {
	if policy == "" && len(arns) == 0 && len(tags) == 0 {
		return nil, nil
	}
	size := 0
	if policy != "" {
		if f := checkString("policy", policy, 1, maxPolicyChars, nil); f != nil {
			return nil, f
		}
		var compact bytes.Buffer
		if json.Compact(&compact, []byte(policy)) != nil {
			return nil, &Fault{Code: "MalformedPolicyDocument", Message: "Syntax errors in policy."}
		}
		size += compact.Len()
	}
	if len(arns) > 10 {
		return nil, invalid("policyArns", fmt.Sprintf("%d ARNs", len(arns)), "Member must have length less than or equal to 10")
	}
	for _, a := range arns {
		if f := checkString("policyArns.member.arn", a, 20, 2048, nil); f != nil {
			return nil, f
		}
		size += len(a)
	}
	for _, kv := range tags {
		size += len(kv[0]) + len(kv[1])
	}
	pct := (size*100 + packedLimit - 1) / packedLimit
	if pct > 100 {
		return nil, &Fault{Code: "PackedPolicyTooLarge", Message: fmt.Sprintf("Packed policy consumes %d%% of allotted space, please use smaller policy.", pct)}
	}
	return &pct, nil
}
