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

{{/* The rules controller-gen generated from the RBAC markers (files/role.yaml, copied by make manifests). kind: ClusterRole or Role. */}}
{{- define "stsbind.generatedRules" -}}
{{- $kind := .kind -}}
{{- $rules := list -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" (.root.Files.Get "files/role.yaml") -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if and $obj (eq (get $obj "kind") $kind) -}}
{{- $rules = concat $rules $obj.rules -}}
{{- end -}}
{{- end -}}
{{- if not $rules -}}
{{- fail (printf "files/role.yaml holds no %s rules; run make manifests" $kind) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}
