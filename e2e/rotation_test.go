package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/credserver"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// boto3Loop is a long-running boto3 program: one client for its whole life,
// as a service would hold it, writing an object every second.
const boto3Loop = `
import sys, time, boto3
endpoint, bucket, prefix, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint)
try:
    s3.create_bucket(Bucket=bucket)
except Exception:
    pass
end, i = time.time() + seconds, 0
while time.time() < end:
    try:
        s3.put_object(Bucket=bucket, Key="%s-%d" % (prefix, i), Body=b"boto3")
        print("round %d: ok" % i, flush=True)
    except Exception as e:
        print("round %d: FAIL %s" % (i, type(e).__name__), flush=True)
    i += 1
    time.sleep(1)
`

// TestRotationWithLongRunningClients: a long-running Go program and a
// long-running boto3 program, in Endpoint mode (through the sidecar) and in
// Files mode (credential_process), keep writing to MinIO across a rotation,
// and the AWS CLI works on both sides of it.
//
// Rotation is driven by writing new credentials, as kubelet does when the
// controller refreshes the Secret. The first credentials carry a session
// policy that MinIO stops honouring at cutoff (aws:CurrentTime), and their
// declared Expiration is 3 s before it: a client that does not re-read its
// credentials when they expire fails after cutoff; one that does never sees
// a failure. A control run with the first keys as static variables proves
// the cut-off is real.
func TestRotationWithLongRunningClients(t *testing.T) {
	f := newFixture(t)
	binding := "rot-" + rand.String(5)
	dir := credentials.MountDir(binding)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bucket := "rotation-" + strings.ToLower(rand.String(6))

	start := time.Now()
	expires := start.Add(25 * time.Second).Truncate(time.Second)
	cutoff := expires.Add(3 * time.Second)
	rotateAt := expires.Add(-10 * time.Second)
	runFor := cutoff.Add(15 * time.Second).Sub(start)

	first := mint(t, f, fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"],`+
		`"Condition":{"DateLessThan":{"aws:CurrentTime":"%s"}}}]}`, cutoff.UTC().Format(time.RFC3339)))
	first.Expiration = expires
	writeMount(t, dir, first, binding)

	// The sidecar, as the webhook runs it: loopback, per-pod token, the mount dir.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	token := rand.String(32)
	sidecarLog := &testenv.SyncBuffer{}
	sidecar := exec.Command(credsrv, fmt.Sprintf("--listen=127.0.0.1:%d", port), "--dir="+credentials.MountRoot, "--binding="+binding)
	sidecar.Env = []string{credserver.EnvAuthToken + "=" + token}
	sidecar.Stderr = sidecarLog
	sidecarStart := time.Now()
	if err := sidecar.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sidecar.Process.Kill(); _ = sidecar.Wait() })
	waitHealthy(t, port)
	t.Logf("sidecar healthy %s after exec", time.Since(sidecarStart).Round(time.Millisecond))

	endpointEnv := []string{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + fmt.Sprintf("http://127.0.0.1:%d%s%s", port, credserver.PathPrefix, binding),
		"AWS_CONTAINER_AUTHORIZATION_TOKEN=" + token,
		"AWS_REGION=" + region, "AWS_DEFAULT_REGION=" + region,
	}
	filesEnv := []string{
		"AWS_CONFIG_FILE=" + dir + "/" + credentials.KeyConfigFile,
		"AWS_REGION=" + region, "AWS_DEFAULT_REGION=" + region,
	}
	// What Files mode deliberately does not do: static keys in a shared
	// credentials file. Nothing re-reads that file, so these must fail.
	staticFileEnv := []string{
		"AWS_SHARED_CREDENTIALS_FILE=" + dir + "/" + credentials.KeyCredentialsFile,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_REGION=" + region, "AWS_DEFAULT_REGION=" + region,
	}
	secs := fmt.Sprintf("%.0f", runFor.Seconds())
	clients := []*longRunning{
		startClient(t, "go endpoint", endpointEnv, s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "go-endpoint", "-every", "1s", "-for", secs+"s"),
		startClient(t, "go files", filesEnv, s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "go-files", "-every", "1s", "-for", secs+"s"),
		startClient(t, "boto3 endpoint", endpointEnv, "/usr/bin/python3", "-c", boto3Loop, minio.Endpoint, bucket, "boto3-endpoint", secs),
		startClient(t, "boto3 files", filesEnv, "/usr/bin/python3", "-c", boto3Loop, minio.Endpoint, bucket, "boto3-files", secs),
	}
	staticFile := []*longRunning{
		startClient(t, "go static credentials file", staticFileEnv, s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "go-static", "-every", "1s", "-for", secs+"s"),
		startClient(t, "boto3 static credentials file", staticFileEnv, "/usr/bin/python3", "-c", boto3Loop, minio.Endpoint, bucket, "boto3-static", secs),
	}
	cli := func(when string, env []string) {
		t.Helper()
		cmd := exec.Command("/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "put-object", "--bucket", bucket,
			"--key", "cli-"+when, "--body", "/etc/hostname")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true"}, env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("AWS CLI %s: %v\n%s", when, err, out)
		}
	}
	cli("endpoint-before", endpointEnv)
	cli("files-before", filesEnv)

	// The controller's refresh, as kubelet delivers it: new files, atomically.
	time.Sleep(time.Until(rotateAt))
	second := mint(t, f, "")
	writeMount(t, dir, second, binding)
	rotated := time.Now()
	t.Logf("rotated at %s, first credentials declared expired at %s, cut off at %s",
		rotated.Format("15:04:05.000"), expires.Format("15:04:05"), cutoff.Format("15:04:05"))

	time.Sleep(time.Until(cutoff.Add(2 * time.Second)))
	cli("endpoint-after", endpointEnv)
	cli("files-after", filesEnv)

	// Control: the first keys, held statically, stop working at cutoff.
	static := exec.Command(s3client, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "static")
	static.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "AWS_REGION=" + region,
		"AWS_ACCESS_KEY_ID=" + first.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + first.SecretAccessKey, "AWS_SESSION_TOKEN=" + first.SessionToken}
	if out, err := static.CombinedOutput(); err == nil {
		t.Fatalf("static first credentials still work after cutoff: the test cannot tell refresh from no refresh\n%s", out)
	}

	for _, c := range clients {
		ok, failed, afterCutoff := c.wait(t, cutoff)
		t.Logf("%s: %d rounds ok, %d failed, %d after cutoff", c.name, ok, len(failed), afterCutoff)
		if len(failed) > 0 {
			t.Errorf("%s failed across the rotation: %v", c.name, failed)
		}
		if afterCutoff < 5 {
			t.Errorf("%s ran only %d rounds after cutoff", c.name, afterCutoff)
		}
	}

	for _, c := range staticFile {
		ok, failed, afterCutoff := c.wait(t, cutoff)
		t.Logf("%s (expected to break): %d rounds ok, %d failed, %d after cutoff", c.name, ok, len(failed), afterCutoff)
		if len(failed) == 0 {
			t.Errorf("%s kept working across the rotation: the static-file finding behind Files mode no longer holds", c.name)
		}
	}

	// From the sidecar's log: when it first served the new credentials.
	newExp := second.Expiration.UTC().Format(time.RFC3339)
	sc := bufio.NewScanner(strings.NewReader(sidecarLog.String()))
	for sc.Scan() {
		var line struct {
			Time       time.Time `json:"time"`
			Msg        string    `json:"msg"`
			Expiration string    `json:"expiration"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "Served credentials" && line.Expiration == newExp {
			t.Logf("first request for the new credentials reached the sidecar %s after the files changed", line.Time.Sub(rotated).Round(time.Millisecond))
			break
		}
	}
	for _, s := range []string{first.SecretAccessKey, first.SessionToken, second.SecretAccessKey, second.SessionToken} {
		if strings.Contains(sidecarLog.String(), s) {
			t.Errorf("the sidecar logged credential material")
		}
	}
}

// mint exchanges a fresh token of the fixture's ServiceAccount at MinIO, as
// the controller does.
func mint(t *testing.T, f *fixture, policy string) credentials.Credentials {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "app"}}
	tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: ptr.To[int64](600)}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	res, err := stsclient.New(stsclient.Options{}).AssumeRoleWithWebIdentity(ctx, stsclient.Request{
		Provider: minioSTS(), RoleARN: minio.RoleARN, SessionName: f.ns, Token: tr.Status.Token,
		Duration: time.Hour, Policy: policy,
	})
	if err != nil {
		t.Fatalf("minting credentials at MinIO: %v", err)
	}
	return res.Credentials
}

func writeMount(t *testing.T, dir string, c credentials.Credentials, binding string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range credentials.SecretData(c, region, binding) {
		tmp := dir + "/." + k + ".tmp"
		if err := os.WriteFile(tmp, v, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dir+"/"+k); err != nil {
			t.Fatal(err)
		}
	}
}

func waitHealthy(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := exec.Command(credsrv, "--probe", fmt.Sprintf("--listen=127.0.0.1:%d", port))
		probe.Env = []string{credserver.EnvAuthToken + "=unused"}
		if probe.Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the sidecar never became healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// longRunning is a client process printing "round N: ok|FAIL ..." lines.
type longRunning struct {
	name string
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	// times records when each line arrived.
	mu    sync.Mutex
	lines []timedLine
	done  chan struct{}
}

type timedLine struct {
	at   time.Time
	text string
}

func startClient(t *testing.T, name string, env []string, args ...string) *longRunning {
	t.Helper()
	c := &longRunning{name: name, out: &testenv.SyncBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true"}, env...)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "round ") {
				c.mu.Lock()
				c.lines = append(c.lines, timedLine{time.Now(), sc.Text()})
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	return c
}

// wait returns the rounds that succeeded, the failed ones, and how many
// rounds ran after the first credentials were cut off.
func (c *longRunning) wait(t *testing.T, cutoff time.Time) (ok int, failed []string, afterCutoff int) {
	t.Helper()
	<-c.done
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("%s exited: %v\n%s", c.name, err, c.out.String())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Time
	for _, l := range c.lines {
		if first.IsZero() {
			first = l.at
		}
		if strings.Contains(l.text, ": ok") {
			ok++
		} else {
			failed = append(failed, fmt.Sprintf("%s at +%s", l.text, l.at.Sub(first).Round(time.Second)))
		}
	}
	for _, l := range c.lines {
		if l.at.After(cutoff) {
			afterCutoff++
		}
	}
	return ok, failed, afterCutoff
}
