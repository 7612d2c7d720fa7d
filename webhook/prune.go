package webhook

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// The pruning behind podPatch: two values of one type cut down to what
// differs, as documents that diff to the same operations as the whole values
// would. An array of equal length stands as an object keyed by index, which
// yields the same paths; an array that grew or shrank stays an array of its
// length, which drives the library's additions and removals, with the
// elements that did not change replaced by one placeholder.

// walk is one pruning pass; unsure says it met an empty struct it would
// have to descend into.
type walk struct{ unsure bool }

// pruned returns what a and b (of one type) marshal to, cut down to where
// they differ: structs and string-keyed maps become map[string]any of the
// members that differ, equal-length arrays become map[string]any of the
// indices that differ, and everything else (scalars, arrays that grew or
// shrank, types with their own MarshalJSON) is kept whole. A member that
// encoding/json leaves out (omitempty) is missing from that side's map.
func (w *walk) pruned(a, b reflect.Value) (pa, pb any, changed bool) {
	t := a.Type()
	info := infoOf(t)
	if info.marshals {
		return leafPair(a, b)
	}
	switch info.kind {
	case reflect.Struct:
		ma, mb := map[string]any(nil), map[string]any(nil)
		changed = w.prunedStruct(info, a, b, &ma, &mb)
		if changed && a.IsZero() {
			w.unsure = true
		}
		if !changed {
			return nil, nil, false
		}
		return orEmpty(ma), orEmpty(mb), true
	case reflect.Pointer:
		if a.IsNil() && b.IsNil() {
			return nil, nil, false
		}
		if a.IsNil() || b.IsNil() {
			return leaf(a), leaf(b), true
		}
		return w.pruned(a.Elem(), b.Elem())
	case reflect.Slice:
		switch {
		case info.bytes || a.IsNil() != b.IsNil():
			return leafPair(a, b)
		case a.Len() != b.Len():
			return w.prunedResized(a, b)
		}
		return w.prunedElements(a, b)
	case reflect.Array:
		return w.prunedElements(a, b)
	case reflect.Map:
		if !info.stringKeys || a.IsNil() != b.IsNil() {
			return leafPair(a, b)
		}
		return w.prunedMap(a, b)
	case reflect.Interface:
		return leafPair(a, b)
	default:
		if a.Equal(b) {
			return nil, nil, false
		}
		return leaf(a), leaf(b), true
	}
}

func (w *walk) prunedStruct(info *typeInfo, a, b reflect.Value, ma, mb *map[string]any) bool {
	changed := false
	for i := range info.fields {
		f := &info.fields[i]
		fa, fb := a.Field(f.index), b.Field(f.index)
		if f.inline {
			if w.prunedStruct(infoOf(fa.Type()), fa, fb, ma, mb) {
				changed = true
			}
			continue
		}
		oa, ob := f.omitted(fa), f.omitted(fb)
		var va, vb any
		switch {
		case oa && ob:
			continue
		case oa || ob:
			va, vb = leaf(fa), leaf(fb)
		default:
			var ch bool
			if va, vb, ch = w.pruned(fa, fb); !ch {
				continue
			}
		}
		changed = true
		if !oa {
			put(ma, f.name, va)
		}
		if !ob {
			put(mb, f.name, vb)
		}
	}
	return changed
}

func (w *walk) prunedElements(a, b reflect.Value) (pa, pb any, changed bool) {
	var ma, mb map[string]any
	for i := range a.Len() {
		va, vb, ch := w.pruned(a.Index(i), b.Index(i))
		if !ch {
			continue
		}
		key := strconv.Itoa(i)
		put(&ma, key, va)
		put(&mb, key, vb)
	}
	if ma == nil {
		return nil, nil, false
	}
	return ma, mb, true
}

// prunedResized stands for arrays that grew or shrank: real arrays, whose
// length drives the library's additions and removals, with each element
// both keep unchanged replaced by the same placeholder, which diffs to
// nothing.
func (w *walk) prunedResized(a, b reflect.Value) (pa, pb any, changed bool) {
	la, lb := a.Len(), b.Len()
	sa, sb := make([]any, la), make([]any, lb)
	for i := range max(la, lb) {
		switch {
		case i >= la:
			sb[i] = leaf(b.Index(i))
		case i >= lb:
			sa[i] = unchanged
		default:
			va, vb, ch := w.pruned(a.Index(i), b.Index(i))
			if !ch {
				va, vb = unchanged, unchanged
			}
			sa[i], sb[i] = va, vb
		}
	}
	return sa, sb, true
}

// unchanged is the placeholder of an array element that did not change.
const unchanged = 0

func (w *walk) prunedMap(a, b reflect.Value) (pa, pb any, changed bool) {
	var ma, mb map[string]any
	iter := a.MapRange()
	for iter.Next() {
		k := iter.Key()
		vb := b.MapIndex(k)
		if !vb.IsValid() {
			put(&ma, k.String(), leaf(iter.Value()))
			continue
		}
		if xa, xb, ch := w.pruned(iter.Value(), vb); ch {
			put(&ma, k.String(), xa)
			put(&mb, k.String(), xb)
		}
	}
	iter = b.MapRange()
	for iter.Next() {
		if !a.MapIndex(iter.Key()).IsValid() {
			put(&mb, iter.Key().String(), leaf(iter.Value()))
		}
	}
	if ma == nil && mb == nil {
		return nil, nil, false
	}
	return orEmpty(ma), orEmpty(mb), true
}

func leafPair(a, b reflect.Value) (pa, pb any, changed bool) {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return nil, nil, false
	}
	return leaf(a), leaf(b), true
}

// leaf is v as encoding/json marshals it in place: by address where it has
// one, so that a MarshalJSON on the pointer applies as it does in the pod.
func leaf(v reflect.Value) any {
	if v.CanAddr() {
		return v.Addr().Interface()
	}
	return v.Interface()
}

func put(m *map[string]any, k string, v any) {
	if *m == nil {
		*m = make(map[string]any, 2)
	}
	(*m)[k] = v
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	zeroChecker   = reflect.TypeFor[interface{ IsZero() bool }]()
)

// typeInfo is what pruned needs to know of a type, worked out once.
type typeInfo struct {
	kind       reflect.Kind
	marshals   bool // its own MarshalJSON or MarshalText: compared and kept whole
	bytes      bool // a []byte, which encoding/json writes as one base64 string
	stringKeys bool // a map whose keys are strings
	fields     []jsonField
}

var typeInfos sync.Map // reflect.Type -> *typeInfo

func infoOf(t reflect.Type) *typeInfo {
	if info, ok := typeInfos.Load(t); ok {
		return info.(*typeInfo)
	}
	pt := reflect.PointerTo(t)
	info := &typeInfo{
		kind:     t.Kind(),
		marshals: t.Implements(jsonMarshaler) || pt.Implements(jsonMarshaler) || t.Implements(textMarshaler) || pt.Implements(textMarshaler),
	}
	switch info.kind {
	case reflect.Slice:
		info.bytes = t.Elem().Kind() == reflect.Uint8
	case reflect.Map:
		info.stringKeys = t.Key().Kind() == reflect.String
	case reflect.Struct:
		info.fields = jsonFields(t)
	}
	typeInfos.Store(t, info)
	return info
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	index    int
	name     string
	inline   bool // an embedded struct without a name: its fields are the parent's
	omitLen  bool // omitempty on a string, slice, map or array: left out when empty
	omitZero bool // omitempty on a number, bool, pointer or interface, or omitzero: left out when zero
	isZero   bool // omitzero on a type with its own IsZero
}

func (f *jsonField) omitted(v reflect.Value) bool {
	switch {
	case f.omitLen:
		return v.Len() == 0
	case f.isZero:
		if v.Kind() == reflect.Pointer && v.IsNil() {
			return true
		}
		return v.Interface().(interface{ IsZero() bool }).IsZero()
	case f.omitZero:
		return v.IsZero()
	}
	return false
}

func jsonFields(t reflect.Type) []jsonField {
	var fs []jsonField
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			fs = append(fs, jsonField{index: i, inline: true})
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f := jsonField{index: i, name: name}
		omitEmpty, omitZero := false, false
		for opts != "" {
			var o string
			o, opts, _ = strings.Cut(opts, ",")
			omitEmpty = omitEmpty || o == "omitempty"
			omitZero = omitZero || o == "omitzero"
		}
		switch k := sf.Type.Kind(); {
		case omitEmpty && (k == reflect.String || k == reflect.Slice || k == reflect.Map || k == reflect.Array):
			f.omitLen = true
		case omitZero && sf.Type.Implements(zeroChecker):
			f.isZero = true
		case omitZero:
			f.omitZero = true
		case omitEmpty && k != reflect.Struct:
			f.omitZero = true
		}
		fs = append(fs, f)
	}
	return fs
}
