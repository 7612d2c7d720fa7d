package webhook

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// podPatch returns the JSON patch that turns the pod before into after. The
// operations are computed by gomodules.xyz/jsonpatch, the library behind
// controller-runtime's typed defaulter, but over two small documents instead
// of the whole pod: each holds only the fields, map keys and array elements
// that differ between before and after, at the paths they have in the pod
// (pruned, in prune.go). Marshalling the whole pod and diffing it against the
// review's bytes was almost half of the typed defaulter's million instructions
// per review. The result differs only where that full diff touched what the
// mutation did not change: it no longer rewrites a value that decoding
// normalised (a quantity "0.5" as "500m"), and it never proposes removing a
// field this build's types do not know, which the defaulter filtered out
// anyway.
//
// The small documents stand for the review's bytes only where the pod those
// bytes decoded to has the same shape. A JSON null or a missing object
// decodes to an empty struct, under which no patch operation would apply; so
// when the diff would descend into an empty struct, podPatch diffs the whole
// pod against raw instead, as the typed defaulter does.
func podPatch(raw []byte, before, after *corev1.Pod) ([]jsonpatch.Operation, error) {
	ops, ok, err := changedPartsPatch(before, after)
	if !ok {
		return wholePodPatch(raw, before, after)
	}
	return ops, err
}

// changedPartsPatch diffs the changed parts of before and after; ok is false
// when they cannot stand for the review's bytes (an empty struct on the way).
func changedPartsPatch(before, after *corev1.Pod) (ops []jsonpatch.Operation, ok bool, err error) {
	w := walk{}
	a, b, changed := w.pruned(reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem())
	if w.unsure {
		return nil, false, nil
	}
	if !changed {
		return nil, true, nil
	}
	ra, err := json.Marshal(a)
	if err != nil {
		return nil, true, fmt.Errorf("marshalling the pod's changed parts: %w", err)
	}
	rb, err := json.Marshal(b)
	if err != nil {
		return nil, true, fmt.Errorf("marshalling the pod's changed parts: %w", err)
	}
	ops, err = jsonpatch.CreatePatch(ra, rb)
	if err != nil {
		return nil, true, fmt.Errorf("diffing the pod's changed parts: %w", err)
	}
	return ops, true, nil
}

// patchOp is a jsonpatch.Operation as it goes on the wire. Marshalling
// these in one pass skips the Operation's own MarshalJSON, which marshals each
// operation on its own and has encoding/json compact the result again.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

var jsonNull = json.RawMessage("null")

// marshalPatch is the JSON of ops, as Operation.MarshalJSON writes each:
// add and replace always carry a value, null included.
func marshalPatch(ops []jsonpatch.Operation) ([]byte, error) {
	wire := make([]patchOp, len(ops))
	for i, op := range ops {
		wire[i] = patchOp{Op: op.Operation, Path: op.Path, Value: op.Value}
		if op.Value == nil && (op.Operation == "add" || op.Operation == "replace") {
			wire[i].Value = jsonNull
		}
	}
	return json.Marshal(wire)
}

// wholePodPatch diffs the marshalled pod after against raw, leaving out the
// removals of what decoding alone drops (fields this build's types do not
// know): those are the review's, not the mutation's.
func wholePodPatch(raw []byte, before, after *corev1.Pod) ([]jsonpatch.Operation, error) {
	ra, err := json.Marshal(after)
	if err != nil {
		return nil, fmt.Errorf("marshalling the pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(raw, ra)
	if err != nil {
		return nil, fmt.Errorf("diffing the pod: %w", err)
	}
	if !slices.ContainsFunc(ops, isRemove) {
		return ops, nil
	}
	rb, err := json.Marshal(before)
	if err != nil {
		return nil, fmt.Errorf("marshalling the pod: %w", err)
	}
	decoded, err := jsonpatch.CreatePatch(raw, rb)
	if err != nil {
		return nil, fmt.Errorf("diffing the pod: %w", err)
	}
	dropped := map[string]bool{}
	for _, op := range decoded {
		if isRemove(op) {
			dropped[op.Path] = true
		}
	}
	return slices.DeleteFunc(ops, func(op jsonpatch.Operation) bool { return isRemove(op) && dropped[op.Path] }), nil
}

func isRemove(op jsonpatch.Operation) bool { return op.Operation == "remove" }
