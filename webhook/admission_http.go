package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"
)

// The pod webhook's admission plumbing. It does what controller-runtime's
// admission.Webhook around a typed defaulter does (decode the review and
// the pod, run Default, answer with the JSON patch, recover a panic as a
// 500), at about a third of the instructions: the review is decoded once,
// without the serializer's separate pass for its kind, and the patch covers
// the changed parts only (podPatch).

// maxReviewBytes bounds a review's body, as controller-runtime does.
const maxReviewBytes = 7 << 20

// Webhook is the pod webhook's HTTP handler, for PodWebhookPath.
func (d *PodDefaulter) Webhook() *PodWebhook { return &PodWebhook{d: d} }

// PodWebhook serves AdmissionReviews (admission.k8s.io/v1) for new pods.
type PodWebhook struct{ d *PodDefaulter }

func (wh *PodWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := logf.Log.WithName("admission")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		writeReview(w, nil, admission.Errored(http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err == nil && len(body) > maxReviewBytes {
		err = fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewBytes)
	}
	if err != nil {
		log.Error(err, "Unable to read the review")
		writeReview(w, nil, admission.Errored(http.StatusBadRequest, err))
		return
	}
	var review admissionv1.AdmissionReview
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		log.Error(err, "Unable to decode the review")
		writeReview(w, nil, admission.Errored(http.StatusBadRequest, err))
		return
	}
	if review.Request == nil || review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		err := fmt.Errorf("want an admission.k8s.io/v1 AdmissionReview with a request, got %s %s", review.APIVersion, review.Kind)
		log.Error(err, "Unable to decode the review")
		writeReview(w, nil, admission.Errored(http.StatusBadRequest, err))
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	writeReview(w, &req, wh.Handle(r.Context(), req))
}

// Handle answers one review: the admission.Handler behind ServeHTTP.
func (wh *PodWebhook) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			for _, fn := range utilruntime.PanicHandlers {
				fn(ctx, p)
			}
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("panic: %v [recovered]", p))
			resp.UID = req.UID
		}
	}()
	resp = wh.review(ctx, req)
	if err := resp.Complete(req); err != nil {
		resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the response: %w", err))
		resp.UID = req.UID
	}
	return resp
}

func (wh *PodWebhook) review(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Delete {
		return admission.Allowed("")
	}
	var pod corev1.Pod
	if err := decodePod(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	before := pod.DeepCopy()
	if err := wh.d.Default(admission.NewContextWithRequest(ctx, req), &pod); err != nil {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			s := status.Status()
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &s}}
		}
		return admission.Denied(err.Error())
	}
	ops, err := podPatch(req.Object.Raw, before, &pod)
	if err == nil && len(ops) == 0 {
		return admission.Allowed("")
	}
	var patch []byte
	if err == nil {
		patch, err = marshalPatch(ops)
	}
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &jsonPatch}}
}

// decodePod decodes a review's object as the API server's decoder would for
// a v1 Pod: case-sensitive field names, integers kept as integers, and a
// missing apiVersion or kind taken to be v1 Pod.
func decodePod(raw []byte, pod *corev1.Pod) error {
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, pod); err != nil {
		return fmt.Errorf("decoding the pod: %w", err)
	}
	if (pod.Kind != "" && pod.Kind != "Pod") || (pod.APIVersion != "" && pod.APIVersion != "v1") {
		return fmt.Errorf("the review's object is %s %s, not a v1 Pod", pod.APIVersion, pod.Kind)
	}
	return nil
}

func writeReview(w http.ResponseWriter, req *admission.Request, resp admission.Response) {
	if req == nil {
		_ = resp.Complete(admission.Request{})
	}
	w.Header().Set("Content-Type", "application/json")
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &resp.AdmissionResponse,
	}
	if err := json.NewEncoder(w).Encode(&review); err != nil {
		logf.Log.WithName("admission").Error(err, "Unable to write the response")
	}
}
