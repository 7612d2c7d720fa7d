{{/* The release's full name, at most 63 characters. */}}
{{- define "stsbind.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stsbind.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stsbind.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "stsbind.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stsbind.serviceAccountName" -}}
{{- default (include "stsbind.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Names the operator is told about (--webhook-service and friends). */}}
{{- define "stsbind.webhookServiceName" -}}
{{- printf "%s-webhook" (include "stsbind.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stsbind.webhookCertSecretName" -}}
{{- printf "%s-webhook-cert" (include "stsbind.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stsbind.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The rules controller-gen generated from the RBAC markers (files/role.yaml,
copied by make manifests), placed by scope. Arguments:
  root:  the chart's context
  kind:  ClusterRole or Role, the kind in files/role.yaml
  scopes: a list of
         cluster     cluster-scoped resources (ClusterRole)
         namespaced  resources of the namespaces the operator serves
         webhook     the MutatingWebhookConfiguration the certificate
                     rotator keeps current (ClusterRole, self-managed only)
  names: resourceNames for every verb but list and watch (optional); RBAC
         cannot restrict a list or watch without a field selector, which
         the informers do not use.
Every generated resource must be placed in $scopes: a marker for a new
resource fails the rendering until someone decides where it is granted.
*/}}
{{- define "stsbind.generatedRules" -}}
{{- $scopes := dict
  "/namespaces" "cluster"
  "authentication.k8s.io/tokenreviews" "cluster"
  "stsbind.dev/clusterstsproviders" "cluster"
  "stsbind.dev/clusterstsproviders/status" "cluster"
  "admissionregistration.k8s.io/mutatingwebhookconfigurations" "webhook"
  "/pods" "namespaced"
  "/configmaps" "namespaced"
  "/secrets" "namespaced"
  "/serviceaccounts" "namespaced"
  "/serviceaccounts/token" "namespaced"
  "events.k8s.io/events" "namespaced"
  "stsbind.dev/iamrolebindings" "namespaced"
  "stsbind.dev/iamrolebindings/status" "namespaced"
  "stsbind.dev/iamrolebindings/finalizers" "namespaced"
  "apps/replicasets" "restart"
  "apps/deployments" "restart"
  "apps/statefulsets" "restart"
  "apps/daemonsets" "restart"
-}}
{{- $kind := .kind -}}
{{- $wanted := .scopes -}}
{{- $names := .names | default list -}}
{{- $rules := list -}}
{{- $found := false -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" (.root.Files.Get "files/role.yaml") -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if and $obj (eq (get $obj "kind") $kind) -}}
{{- $found = true -}}
{{- range $rule := $obj.rules -}}
{{- range $group := $rule.apiGroups -}}
{{- $resources := list -}}
{{- range $resource := $rule.resources -}}
{{- $key := printf "%s/%s" $group $resource -}}
{{- if not (hasKey $scopes $key) -}}
{{- fail (printf "files/role.yaml grants %s, which the chart does not place: add it to $scopes in templates/_helpers.tpl" $key) -}}
{{- end -}}
{{- if has (get $scopes $key) $wanted -}}
{{- $resources = append $resources $resource -}}
{{- end -}}
{{- end -}}
{{- if $resources -}}
{{- $watch := list -}}
{{- $other := list -}}
{{- range $verb := $rule.verbs -}}
{{- if and $names (has $verb (list "list" "watch")) -}}
{{- $watch = append $watch $verb -}}
{{- else -}}
{{- $other = append $other $verb -}}
{{- end -}}
{{- end -}}
{{- if $watch -}}
{{- $rules = append $rules (dict "apiGroups" (list $group) "resources" $resources "verbs" $watch) -}}
{{- end -}}
{{- if $other -}}
{{- $r := dict "apiGroups" (list $group) "resources" $resources "verbs" $other -}}
{{- if $names -}}
{{- $_ := set $r "resourceNames" $names -}}
{{- end -}}
{{- $rules = append $rules $r -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "files/role.yaml holds no %s; run make manifests" $kind) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}
