package controllers

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
)

// effectiveSpec is the binding's spec with the provider's settings and the
// controller's defaults applied: every field that changes the credentials,
// and nothing else.
type effectiveSpec struct {
	Provider           string   `json:"provider"`
	ServiceAccountName string   `json:"serviceAccountName"`
	RoleARN            string   `json:"roleArn"`
	Audience           string   `json:"audience"`
	SessionDuration    string   `json:"sessionDuration"`
	SessionName        string   `json:"sessionName"`
	SessionPolicy      string   `json:"sessionPolicy"`
	PolicyARNs         []string `json:"policyArns"`
	// Region is the pods' region (the profile in the Secret); STSRegion and
	// STSEndpoint are where the provider sends the token.
	Region      string `json:"region"`
	STSRegion   string `json:"stsRegion"`
	STSEndpoint string `json:"stsEndpoint"`
	// Identity is the provider's: "webIdentity", or the keys' Secret and
	// operation.
	Identity string `json:"identity"`
	// Tags are the automatic session tags (AssumeRole, GetFederationToken).
	Tags        map[string]string `json:"tags,omitempty"`
	ChainedRole *chainedSpec      `json:"chainedRole,omitempty"`

	// Parsed durations; refreshBefore changes the schedule, not the credentials.
	session       time.Duration
	refreshBefore *time.Duration
}

// chainedSpec is the chained role with its tags: the automatic ones and the
// binding's own.
type chainedSpec struct {
	RoleARN           string            `json:"roleArn"`
	ExternalID        string            `json:"externalId,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
	TransitiveTagKeys []string          `json:"transitiveTagKeys,omitempty"`
	SourceIdentity    string            `json:"sourceIdentity,omitempty"`
}

// errInvalidSpec: a spec the API server let through but that cannot work.
type errInvalidSpec struct{ reason, msg string }

func (e errInvalidSpec) Error() string { return e.msg }

// effective applies the provider's settings and the controller's defaults to
// the spec and checks what the API server cannot: that the session policy is
// JSON.
func effective(b *stsbindv1.IAMRoleBinding, p *stsbindv1.ClusterSTSProvider, defaultRegion, clusterName string) (effectiveSpec, error) {
	s := b.Spec
	session, refreshBefore, err := s.Durations()
	if err != nil {
		return effectiveSpec{}, errInvalidSpec{stsbindv1.ReasonInvalidSpec, err.Error() + "; fix the binding"}
	}
	if s.SessionPolicy != "" && !json.Valid([]byte(s.SessionPolicy)) {
		return effectiveSpec{}, errInvalidSpec{stsbindv1.ReasonInvalidSessionPolicy,
			"spec.sessionPolicy is not valid JSON; no STS call is made until the binding is changed"}
	}
	e := effectiveSpec{
		Provider:           p.Name,
		ServiceAccountName: s.ServiceAccountName,
		RoleARN:            s.RoleARN,
		Audience:           p.Spec.AudienceOrDefault(),
		SessionDuration:    session.String(),
		session:            session,
		refreshBefore:      refreshBefore,
		SessionName:        s.SessionName,
		SessionPolicy:      s.SessionPolicy,
		Region:             cmp.Or(s.Region, defaultRegion),
		STSRegion:          cmp.Or(p.Spec.Region, defaultRegion),
		STSEndpoint:        p.Spec.Endpoint,
	}
	if e.SessionName == "" {
		e.SessionName = defaultSessionName(b.Namespace, b.Name)
	}
	e.Identity = "webIdentity"
	if keys := accessKeysOf(p); keys != nil {
		e.Identity = "accessKeys/" + keys.SecretName + "/" + cmp.Or(string(keys.Operation), string(stsbindv1.OperationAssumeRole))
	}
	if p.Spec.AutomaticSessionTags != "Disabled" {
		e.Tags = automaticTags(b, clusterName)
	}
	if c := s.ChainedRole; c != nil {
		e.ChainedRole = &chainedSpec{RoleARN: c.RoleARN, ExternalID: c.ExternalID,
			TransitiveTagKeys: c.TransitiveTagKeys, SourceIdentity: c.SourceIdentity}
		if len(e.Tags)+len(c.SessionTags) > 0 {
			e.ChainedRole.Tags = maps.Clone(e.Tags)
			if e.ChainedRole.Tags == nil {
				e.ChainedRole.Tags = map[string]string{}
			}
			maps.Copy(e.ChainedRole.Tags, c.SessionTags)
		}
	}
	for _, p := range s.PolicyARNs {
		e.PolicyARNs = append(e.PolicyARNs, string(p))
	}
	return e, nil
}

// hash is the spec-hash annotation: SHA-256 over the effective spec.
func (e effectiveSpec) hash() string {
	b, _ := json.Marshal(e)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// automaticTags are the session tags of every AssumeRole and
// GetFederationToken session, for attribute-based access control.
func automaticTags(b *stsbindv1.IAMRoleBinding, clusterName string) map[string]string {
	t := map[string]string{
		"kubernetes-namespace":       b.Namespace,
		"kubernetes-service-account": b.Spec.ServiceAccountName,
		"stsbind-binding":            b.Name,
	}
	if clusterName != "" {
		t["stsbind-cluster"] = clusterName
	}
	return t
}

// federatedName is GetFederationToken's Name: 2–32 characters of
// [\w+=,.@-], "<namespace>.<name>" shortened with a hash like the session name.
func federatedName(namespace, name string) string {
	return shortName(namespace+"."+name, 32)
}

// defaultSessionName is stsbindv1.DefaultSessionName: the webhook derives
// the WebIdentity-mode AWS_ROLE_SESSION_NAME the same way.
func defaultSessionName(namespace, name string) string {
	return stsbindv1.DefaultSessionName(namespace, name)
}

// shortName is stsbindv1.ShortName.
func shortName(full string, limit int) string { return stsbindv1.ShortName(full, limit) }

// heldFromSecret reads back what the controller wrote into a Secret of ours.
// nil means there is nothing to keep.
func heldFromSecret(s *corev1.Secret) *heldCredentials {
	if s == nil {
		return nil
	}
	h := &heldCredentials{SpecHash: s.Annotations[stsbindv1.AnnotationSpecHash]}
	issued, err1 := time.Parse(time.RFC3339, s.Annotations[stsbindv1.AnnotationIssuedAt])
	exp, err2 := time.Parse(time.RFC3339, s.Annotations[stsbindv1.AnnotationExpiration])
	h.IssuedAt, h.Expiration = issued, exp
	h.Intact = err1 == nil && err2 == nil &&
		s.Type == stsbindv1.SecretType &&
		observedDataHash(s) == s.Annotations[stsbindv1.AnnotationDataHash]
	return h
}

// observedDataHash is the hash of a Secret's data: kept by the cache, or
// computed from a live read.
func observedDataHash(s *corev1.Secret) string {
	if observed, cached := s.Data[cachedDataHashKey]; cached && len(s.Data) == 1 {
		return string(observed)
	}
	return credentials.DataHash(s.Data)
}

// cachedDataHashKey replaces a cached Secret's data: its hash. The slash makes
// it a key no real Secret can have.
const cachedDataHashKey = "stsbind.dev/cached-data-sha256"

// SecretCache is how the manager caches Secrets: only those stsbind wrote,
// and of those only the metadata and a hash of the data. Credentials stay out
// of the controller's memory, which at 10,000 bindings is most of its heap;
// the hash still tells an edited Secret from the one written.
func SecretCache() cache.ByObject {
	return cache.ByObject{
		Label: labels.SelectorFromSet(labels.Set{stsbindv1.LabelManagedBy: stsbindv1.LabelManagedByValue}),
		Transform: func(obj any) (any, error) {
			s, ok := obj.(*corev1.Secret)
			if !ok {
				return obj, nil
			}
			s.ManagedFields = nil
			if _, done := s.Data[cachedDataHashKey]; !done || len(s.Data) != 1 {
				s.Data = map[string][]byte{cachedDataHashKey: []byte(credentials.DataHash(s.Data))}
			}
			s.StringData = nil
			return s, nil
		},
	}
}

// renderSecret sets everything the controller owns on s: type, labels,
// annotations and data. Other labels and annotations are left alone.
func renderSecret(s *corev1.Secret, b *stsbindv1.IAMRoleBinding, c credentials.Credentials, spec effectiveSpec, issuedAt time.Time) {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[stsbindv1.LabelManagedBy] = stsbindv1.LabelManagedByValue
	s.Labels[stsbindv1.LabelBinding] = b.Name
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[stsbindv1.AnnotationExpiration] = c.Expiration.UTC().Format(time.RFC3339)
	s.Annotations[stsbindv1.AnnotationIssuedAt] = issuedAt.UTC().Format(time.RFC3339)
	s.Annotations[stsbindv1.AnnotationSpecHash] = spec.hash()
	s.Type = stsbindv1.SecretType
	s.Data = credentials.SecretData(c, spec.Region, b.Name)
	s.Annotations[stsbindv1.AnnotationDataHash] = credentials.DataHash(s.Data)
}

// newSecret is an empty Secret of the binding's name, before rendering.
func newSecret(b *stsbindv1.IAMRoleBinding) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}}
}

// errSecretConflict: a Secret of the wanted name exists and is not this binding's.
type errSecretConflict struct {
	name  string
	owner string // "" when it has no controller
}

func (e errSecretConflict) Error() string {
	if e.owner == "" {
		return fmt.Sprintf("Secret %s exists and is not managed by this binding; stsbind will not overwrite it: delete it or set spec.secretName", e.name)
	}
	return fmt.Sprintf("Secret %s belongs to %s; stsbind will not overwrite it: set spec.secretName", e.name, e.owner)
}
