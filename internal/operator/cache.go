package operator

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/controllers"
)

// CacheOptions is how the operator's manager caches: only the Secrets
// stsbind wrote and the pods that have not finished, both stripped, and
// nothing outside watchNamespaces (--watch-namespaces; empty: all). Entries
// are trimmed and empty ones skipped, so a flag split on commas can be
// passed as it is.
func CacheOptions(watchNamespaces []string) cache.Options {
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			// Only Secrets stsbind wrote are cached: no cluster-wide Secret cache.
			&corev1.Secret{}: controllers.SecretCache(),
			// Pods that have not finished, stripped to their Secret references.
			&corev1.Pod{}: controllers.PodCache(),
		},
		// Nothing reads managedFields; at 10,000 bindings they are a tenth
		// of the cache.
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	if ns := namespaces(watchNamespaces); len(ns) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, n := range ns {
			opts.DefaultNamespaces[n] = cache.Config{}
		}
	}
	return opts
}

// namespaces cleans a --watch-namespaces list the same way for the cache and
// the webhook, so that the webhook injects exactly where the cache sees.
func namespaces(list []string) []string {
	var out []string
	for _, n := range list {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
