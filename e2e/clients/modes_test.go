package clients

import (
	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// mode is one column of the matrix: an injection mode and what README says
// each client does in it.
type mode struct {
	name      string
	injection stsbindv1.InjectionMode
	// cells is README's claim per client name; the test measures each.
	cells map[string]cell
}

// cell is what README says of one client in one mode.
type cell struct {
	verdict verdict
	// why is README's reason.
	why string
	// fails is how it fails: a "does not work" cell at once, a "works until
	// restart" one once the old credentials stop working.
	fails failure
}

// MinIO's answers: a request signed with cut-off credentials, or an
// unsigned one.
var (
	cutOff    = failure{says: "AccessDenied"}
	noCredsAt = failure{says: "AccessDenied", unsigned: true}
)

// The matrix's columns. A new mode is one entry here.
//
// WebIdentity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, the SDK calling
// STS itself): its entry goes here once that mode is on main (branch
// webidentity); it is not yet, so README's table has no such column.
var modes = []mode{
	{name: "Files", injection: stsbindv1.InjectionFiles, cells: map[string]cell{
		"Go, aws-sdk-go-v2":          {verdict: refreshes, why: "runs `credential_process` again once the credentials expire"},
		"boto3 1.26 (Debian)":        {verdict: refreshes, why: "runs `credential_process` again within 15 minutes of expiry"},
		"boto3 1.43 (pip)":           {verdict: refreshes, why: "runs `credential_process` again within 15 minutes of expiry"},
		"AWS CLI 2.9 (Debian)":       {verdict: refreshes, why: "each command runs `credential_process`"},
		"AWS CLI 1.45 (pip)":         {verdict: refreshes, why: "each command runs `credential_process`"},
		"JavaScript SDK v3":          {verdict: refreshes, why: "runs `credential_process` again within 5 minutes of expiry"},
		"PHP AsyncAws 1.18 (Debian)": {verdict: doesNotWork, why: "AsyncAws has no `credential_process`: it finds no keys in the profile and sends requests unsigned (AccessDenied)", fails: noCredsAt},
	}},
	{name: "Env", injection: stsbindv1.InjectionEnv, cells: map[string]cell{
		"Go, aws-sdk-go-v2":          {verdict: untilRestart, why: envWhy, fails: cutOff},
		"boto3 1.26 (Debian)":        {verdict: untilRestart, why: envWhy, fails: cutOff},
		"boto3 1.43 (pip)":           {verdict: untilRestart, why: envWhy, fails: cutOff},
		"AWS CLI 2.9 (Debian)":       {verdict: untilRestart, why: envCLIWhy, fails: cutOff},
		"AWS CLI 1.45 (pip)":         {verdict: untilRestart, why: envCLIWhy, fails: cutOff},
		"JavaScript SDK v3":          {verdict: untilRestart, why: envWhy, fails: cutOff},
		"PHP AsyncAws 1.18 (Debian)": {verdict: untilRestart, why: envWhy, fails: cutOff},
	}},
	{name: "Endpoint", injection: stsbindv1.InjectionEndpoint, cells: map[string]cell{
		"Go, aws-sdk-go-v2":          {verdict: refreshes, why: "asks the sidecar again within 5 minutes of expiry"},
		"boto3 1.26 (Debian)":        {verdict: refreshes, why: "asks the sidecar again within 15 minutes of expiry"},
		"boto3 1.43 (pip)":           {verdict: refreshes, why: "asks the sidecar again within 15 minutes of expiry"},
		"AWS CLI 2.9 (Debian)":       {verdict: refreshes, why: "each command asks the sidecar"},
		"AWS CLI 1.45 (pip)":         {verdict: refreshes, why: "each command asks the sidecar"},
		"JavaScript SDK v3":          {verdict: refreshes, why: "asks the sidecar again within 5 minutes of expiry"},
		"PHP AsyncAws 1.18 (Debian)": {verdict: doesNotWork, why: "AsyncAws ignores `AWS_CONTAINER_CREDENTIALS_FULL_URI` (it knows only the ECS relative URI at 169.254.170.2) and sends requests unsigned (AccessDenied)", fails: noCredsAt},
	}},
}

const (
	envWhy    = "keys fixed at the container's start: AccessDenied once they stop working; a restart gets the current ones"
	envCLIWhy = "each command reads the container's variables, fixed at its start: AccessDenied once they stop working; a restart gets the current ones"
)
