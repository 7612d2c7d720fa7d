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
	// tried (WebIdentity) is the host:port the client sends its token to
	// instead of AWS_ENDPOINT_URL_STS: the test's guard proxy refuses it,
	// so nothing leaves the machine. Empty: the client must not try any.
	tried string
}

// MinIO's answers: a request signed with cut-off credentials, or an
// unsigned one.
var (
	cutOff    = failure{says: "AccessDenied"}
	noCredsAt = failure{says: "AccessDenied", unsigned: true}
)

// The matrix's columns. A new mode is one entry here.
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
	{name: "WebIdentity", injection: stsbindv1.InjectionWebIdentity, cells: map[string]cell{
		"Go, aws-sdk-go-v2":          {verdict: refreshes, why: "calls `AssumeRoleWithWebIdentity` at `AWS_ENDPOINT_URL_STS` again once its credentials expire, reading the token file"},
		"boto3 1.26 (Debian)":        {verdict: doesNotWork, why: "botocore 1.29 " + ignoresSTS, fails: awsSTSRefused("ProxyConnectionError"), tried: awsSTS},
		"boto3 1.43 (pip)":           {verdict: refreshes, why: "calls `AssumeRoleWithWebIdentity` at `AWS_ENDPOINT_URL_STS` again within 15 minutes of expiry, reading the token file"},
		"AWS CLI 2.9 (Debian)":       {verdict: doesNotWork, why: ignoresSTS, fails: awsSTSRefused("Failed to connect to proxy URL"), tried: awsSTS},
		"AWS CLI 1.45 (pip)":         {verdict: refreshes, why: "each command calls `AssumeRoleWithWebIdentity` at `AWS_ENDPOINT_URL_STS`"},
		"JavaScript SDK v3":          {verdict: refreshes, why: "calls `AssumeRoleWithWebIdentity` at `AWS_ENDPOINT_URL_STS` again within 5 minutes of expiry, reading the token file"},
		"PHP AsyncAws 1.18 (Debian)": {verdict: doesNotWork, why: "AsyncAws " + ignoresSTS + " (its `WebIdentityProvider` builds its STS client from the region only; no setting changes that); it then finds no credentials and sends requests unsigned (AccessDenied)", fails: noCredsAt, tried: awsSTS},
	}},
}

// awsSTS is where the clients that ignore AWS_ENDPOINT_URL_STS send the
// token: AWS STS of the pod's region (AWS_STS_REGIONAL_ENDPOINTS=regional).
const awsSTS = "sts." + region + ".amazonaws.com:443"

const ignoresSTS = "ignores `AWS_ENDPOINT_URL_STS` and sends the token to AWS STS (`" + awsSTS + "`): does not work with a provider of its own endpoint (MinIO here; the test refuses the connection), works against AWS STS"

// awsSTSRefused: the client found no credentials (its call to AWS STS was
// refused) and sent the request unsigned, or, for a CLI, gave up.
func awsSTSRefused(says string) failure { return failure{says: says, unsigned: true} }

const (
	envWhy    = "keys fixed at the container's start: AccessDenied once they stop working; a restart gets the current ones"
	envCLIWhy = "each command reads the container's variables, fixed at its start: AccessDenied once they stop working; a restart gets the current ones"
)
