package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/testrig/podview"
)

// TestMinIOAssumeRoleWithUserKeys is the S3 guide's restricted listing done
// for real: a provider signs AssumeRole with MinIO user keys (here MinIO's
// root user, the only user this MinIO has), the binding's session policy
// allows listing one bucket, and the pods' credentials list that bucket and
// are refused another.
func TestMinIOAssumeRoleWithUserKeys(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	allowed := "listed-" + strings.ToLower(rand.String(6))
	other := "hidden-" + strings.ToLower(rand.String(6))
	root := &podview.View{Env: []string{"AWS_ACCESS_KEY_ID=" + minio.RootUser, "AWS_SECRET_ACCESS_KEY=" + minio.RootPassword, "AWS_REGION=" + region}}
	for _, bucket := range []string{allowed, other} {
		runClient(t, root, "aws cli (root)", "/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "create-bucket", "--bucket", bucket)
	}
	keys := "minio-user-" + rand.String(5)
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: keys},
		StringData: map[string]string{controllers.KeyAccessKeyID: minio.RootUser, controllers.KeySecretAccessKey: minio.RootPassword},
	}); err != nil {
		t.Fatal(err)
	}
	p := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: "minio-keys-" + rand.String(5)},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region: region, Endpoint: minio.Endpoint,
			Identity:          &stsbindv1.ProviderIdentity{AccessKeys: &stsbindv1.AccessKeys{SecretName: keys, Operation: stsbindv1.OperationAssumeRole}},
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:minio:iam:::role/**"},
			// MinIO takes no session tags.
			AutomaticSessionTags: "Disabled",
		},
	}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })

	policy := `{"Version":"2012-10-17","Statement":[{"Sid":"1","Action":["s3:ListBucket"],"Effect":"Allow","Resource":["arn:aws:s3:::` + allowed + `"]}]}`
	name := "lister-" + rand.String(5)
	_, _, _, view := f.injected(name, func(s *stsbindv1.IAMRoleBindingSpec) {
		s.ProviderRef = &stsbindv1.ProviderReference{Name: p.Name}
		s.RoleARN = "arn:minio:iam:::role/unused-by-minio"
		s.SessionPolicy = policy
	})
	list := func(bucket string) (string, error) {
		cmd := exec.Command("/usr/bin/aws", "--endpoint-url", minio.Endpoint, "s3api", "list-objects-v2", "--bucket", bucket)
		cmd.Env = view.Environ(t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := list(allowed); err != nil {
		t.Errorf("listing the policy's bucket failed: %v\n%s", err, out)
	}
	if out, err := list(other); err == nil || !strings.Contains(out, "AccessDenied") {
		t.Errorf("listing another bucket: err %v, output %q; want AccessDenied", err, out)
	}
}
