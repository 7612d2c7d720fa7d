package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/internal/testrig/images"
)

// podScript shows who the container runs as and the profile the webhook
// pointed AWS_CONFIG_FILE at, then lists a bucket with aws-sdk-go-v2,
// which runs the profile's credential_process (cat) through sh.
const podScript = `echo "$(busybox id), root filesystem $(busybox touch /probe 2>/dev/null && echo writable || echo read-only)"
echo "AWS_CONFIG_FILE=$AWS_CONFIG_FILE:"
cat "$AWS_CONFIG_FILE"
echo "s3client (aws-sdk-go-v2): create bucket stsbind-demo, put hello.txt, list the bucket:"
exec /s3client -endpoint "$1" -bucket stsbind-demo -key hello.txt`

// runPod creates the pod, shows what the webhook added, waits until it is
// done and prints its log as kubelet kept it.
func runPod(ctx context.Context, c cluster, serviceAccount, s3URL string) (*corev1.Pod, error) {
	pod := appPod(serviceAccount, s3URL)
	start := time.Now()
	if err := c.client.Create(ctx, pod); err != nil {
		return nil, err
	}
	printInjection(pod)
	if !injected(pod) {
		return nil, fmt.Errorf("the webhook did not mount the credentials into pod %s", pod.Name)
	}
	var p corev1.Pod
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
			return nil, err
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			break
		}
		if time.Now().After(deadline) {
			out, _ := c.run(nil, "describe", "pod", pod.Name, "-n", namespace)
			return nil, fmt.Errorf("pod %s not done after 3m:\n%s", pod.Name, out)
		}
	}
	fmt.Printf("      pod %s on node %s: %s %s after it was created\n", p.Name, p.Spec.NodeName, p.Status.Phase, since(start))
	fmt.Printf("      $ kubectl logs %s\n", p.Name)
	log, err := c.run(nil, "logs", p.Name, "-n", namespace)
	fmt.Print(indent(log))
	if err != nil {
		return nil, err
	}
	if p.Status.Phase != corev1.PodSucceeded || !strings.Contains(log, "object: hello.txt") {
		out, _ := c.run(nil, "describe", "pod", p.Name, "-n", namespace)
		return nil, fmt.Errorf("the pod did not list the bucket:\n%s", out)
	}
	return &p, nil
}

// appPod runs the S3 client once in the busybox image (Files mode needs sh
// and cat), as the non-root user with a read-only root filesystem.
func appPod(serviceAccount, s3URL string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "app"},
		Spec: corev1.PodSpec{
			ServiceAccountName: serviceAccount,
			RestartPolicy:      corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](images.NonRoot), RunAsGroup: ptr.To[int64](images.NonRoot),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           images.BusyboxName,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/sh", "-c", podScript, "app"},
				Args:            []string{s3URL},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem:   ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// injected reports whether the webhook mounted a binding's Secret.
func injected(pod *corev1.Pod) bool {
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if strings.HasPrefix(m.MountPath, "/var/run/secrets/stsbind.dev/") {
			return true
		}
	}
	return false
}
