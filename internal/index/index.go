// Package index registers the cache indexes that the controller and the
// webhook share.
package index

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// ServiceAccountName indexes IAMRoleBindings by spec.serviceAccountName. The
// CRD also declares it a selectable field, so the same key works in a live
// List against the API server.
const ServiceAccountName = "spec.serviceAccountName"

// Setup registers the indexes with the manager's field indexer. Call it once
// per manager.
func Setup(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &stsbindv1.IAMRoleBinding{}, ServiceAccountName, func(o client.Object) []string {
		return []string{o.(*stsbindv1.IAMRoleBinding).Spec.ServiceAccountName}
	})
}

// ProviderName indexes IAMRoleBindings by the ClusterSTSProvider they use:
// spec.providerRef.name, or the controller's default provider for bindings
// that name none.
const ProviderName = "stsbind.dev/provider"

// SetupProviders registers the provider index; the controller's manager
// calls it once, with the controller's --default-provider.
func SetupProviders(ctx context.Context, indexer client.FieldIndexer, defaultProvider string) error {
	return indexer.IndexField(ctx, &stsbindv1.IAMRoleBinding{}, ProviderName, func(o client.Object) []string {
		return []string{o.(*stsbindv1.IAMRoleBinding).ProviderNameOrDefault(defaultProvider)}
	})
}
