package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// awsClient is one client of the matrix, as README's table names it.
type awsClient struct {
	name string
	// version is the version README's table is measured with: the installed
	// one must start with it.
	version string
	// sdk: a library that a long-running program holds; otherwise a CLI,
	// one process per command.
	sdk bool
	// installed finds the program and its version; the error says how to
	// install it.
	installed func() (program, version string, err error)
	// argv: for an SDK a writer of prefix-N to bucket, one JSON line per
	// write, once a second until until (zero: a single write); for a CLI one
	// put-object of prefix.
	argv func(program, bucket, prefix string, until time.Time) []string
}

// The matrix's clients, in README's order.
var matrixClients = []*awsClient{
	{name: "Go, aws-sdk-go-v2", version: "v1.", sdk: true, installed: goSDK, argv: s3clientWriter},
	{name: "boto3 1.26 (Debian)", version: "1.26.", sdk: true, installed: boto3At("/usr/bin/python3", "apt-get install python3-boto3 (.ci/run does)"), argv: scriptWriter("python/writer.py")},
	{name: "boto3 1.43 (pip)", version: "1.43.", sdk: true, installed: pyenvBoto3, argv: scriptWriter("python/writer.py")},
	{name: "AWS CLI 2.9 (Debian)", version: "2.9.", installed: cliAt(func() (string, error) { return "/usr/bin/aws", nil }, "apt-get install awscli (.ci/run does)"), argv: cliPut},
	{name: "AWS CLI 1.45 (pip)", version: "1.45.", installed: cliAt(pyenvCLI, "the image's pip AWS CLI v1 beside the first python3 on PATH"), argv: cliPut},
	{name: "JavaScript SDK v3", version: "3.", sdk: true, installed: jsSDK, argv: scriptWriter("js/writer.mjs")},
	{name: "PHP AsyncAws 1.18 (Debian)", version: "1.18.", sdk: true, installed: asyncAws, argv: scriptWriter("php/writer.php")},
}

// clientsDir is this package's directory, where the writers are.
func clientsDir() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return wd
}

func s3clientWriter(program, bucket, prefix string, until time.Time) []string {
	argv := []string{program, "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", prefix, "-loop", "-every", "1s"}
	if until.IsZero() {
		return append(argv, "-rounds", "1")
	}
	return append(argv, "-for", time.Until(until).Round(time.Millisecond).String())
}

// scriptWriter runs writer.py, writer.mjs or writer.php: ROUNDS and UNTIL.
func scriptWriter(script string) func(program, bucket, prefix string, until time.Time) []string {
	return func(program, bucket, prefix string, until time.Time) []string {
		argv := []string{program, filepath.Join(clientsDir(), script), minio.Endpoint, bucket, prefix}
		if until.IsZero() {
			return append(argv, "1", "0")
		}
		return append(argv, "0", strconv.FormatInt(until.Unix(), 10))
	}
}

// cliPut: Debian's CLI 2.9 ignores AWS_ENDPOINT_URL, so --endpoint-url.
func cliPut(program, bucket, key string, _ time.Time) []string {
	return []string{program, "--endpoint-url", minio.Endpoint, "s3api", "put-object", "--bucket", bucket, "--key", key, "--body", "/etc/hostname"}
}

// goSDK is the s3client built in TestMain; its version is the S3 module's
// in its build info.
func goSDK() (string, string, error) {
	program := filepath.Join(bin, "s3client")
	out, err := exec.Command("go", "version", "-m", program).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("go version -m: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "dep" && f[1] == "github.com/aws/aws-sdk-go-v2/service/s3" {
			return program, f[2], nil
		}
	}
	return "", "", fmt.Errorf("s3client's build info names no aws-sdk-go-v2/service/s3:\n%s", out)
}

func boto3At(python, install string) func() (string, string, error) {
	return func() (string, string, error) {
		out, err := exec.Command(python, "-c", "import boto3; print(boto3.__version__)").CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("%s has no boto3 (%v: %s): %s", python, err, strings.TrimSpace(string(out)), install)
		}
		return python, strings.TrimSpace(string(out)), nil
	}
}

// pyenvPython is the image's pip Python: the real interpreter behind the
// first python3 on PATH (a pyenv shim on the image, which the clients' PATH
// of /usr/bin:/bin would not find), or, where PATH lacks the shims, the
// pyenv version that has boto3.
func pyenvPython() (string, error) {
	var candidates []string
	if out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	root := os.Getenv("PYENV_ROOT")
	if home, err := os.UserHomeDir(); root == "" && err == nil {
		root = filepath.Join(home, ".pyenv")
	}
	found, _ := filepath.Glob(filepath.Join(root, "versions", "*", "bin", "python3"))
	for _, p := range append(candidates, found...) {
		if p != "/usr/bin/python3" && exec.Command(p, "-c", "import boto3").Run() == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Python with boto3 but Debian's (first python3 on PATH: %v; pyenv versions: %v): the image's pip clients (boto3 1.43, AWS CLI 1.45) live in a pyenv Python", candidates, found)
}

func pyenvBoto3() (string, string, error) {
	python, err := pyenvPython()
	if err != nil {
		return "", "", err
	}
	return boto3At(python, "pip install boto3 into "+python)()
}

func pyenvCLI() (string, error) {
	python, err := pyenvPython()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(python), "aws"), nil
}

func cliAt(find func() (string, error), install string) func() (string, string, error) {
	return func() (string, string, error) {
		program, err := find()
		if err != nil {
			return "", "", err
		}
		out, err := exec.Command(program, "--version").CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("%s --version: %v (%s): %s", program, err, strings.TrimSpace(string(out)), install)
		}
		// "aws-cli/2.9.19 Python/3.11.2 ..."
		v, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(out)), "aws-cli/"), " ")
		return program, v, nil
	}
}

// jsSDK needs node and the packages npm ci installed from js/package-lock.json.
func jsSDK() (string, string, error) {
	const node = "/usr/bin/node"
	if _, err := os.Stat(node); err != nil {
		return "", "", fmt.Errorf("no %s: apt-get install nodejs", node)
	}
	var pkg, installed struct {
		Version      string            `json:"version"`
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := readJSON(filepath.Join(clientsDir(), "js", "package.json"), &pkg); err != nil {
		return "", "", err
	}
	if err := readJSON(filepath.Join(clientsDir(), "js", "node_modules", "@aws-sdk", "client-s3", "package.json"), &installed); err != nil {
		return "", "", fmt.Errorf("%w: run npm ci in e2e/clients/js (.ci/run does)", err)
	}
	if want := pkg.Dependencies["@aws-sdk/client-s3"]; installed.Version != want {
		return "", "", fmt.Errorf("e2e/clients/js/node_modules has @aws-sdk/client-s3 %s, package.json pins %s: run npm ci in e2e/clients/js", installed.Version, want)
	}
	return node, installed.Version, nil
}

func asyncAws() (string, string, error) {
	const php = "/usr/bin/php"
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "php-async-aws-core").CombinedOutput()
	if _, statErr := os.Stat(php); err != nil || statErr != nil {
		return "", "", fmt.Errorf("php-cli or php-async-aws-core missing (%s): apt-get install php-cli php-async-aws-core (.ci/run does)", strings.TrimSpace(string(out)))
	}
	return php, strings.TrimSpace(string(out)), nil
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// resolveClients finds every client and checks that its version is the one
// README's table is for: a missing client is a failure, never a skip (the
// pip clients come with the image, .ci/run installs the others).
func resolveClients(t *testing.T) map[*awsClient]string {
	t.Helper()
	programs := map[*awsClient]string{}
	for _, c := range matrixClients {
		program, version, err := c.installed()
		switch {
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !strings.HasPrefix(version, c.version):
			t.Errorf("%s: installed version %s; README's table is for %s*: measure again and update the table", c.name, version, c.version)
		default:
			t.Logf("%s: %s %s", c.name, program, version)
			programs[c] = program
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return programs
}
