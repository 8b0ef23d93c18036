{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "taskpool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "taskpool.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every object the chart creates, except the component. */}}
{{- define "taskpool.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "taskpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskpool
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "taskpool.labels" -}}
{{ include "taskpool.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels that select the operator pod; immutable once installed. */}}
{{- define "taskpool.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "taskpool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskpool.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: a digest pins it; otherwise the tag, defaulting to the chart's appVersion. */}}
{{- define "taskpool.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The rules the operator needs inside each namespace it watches (Role or ClusterRole alike): exactly the
calls in operator/taskpool_operator/kube.py plus kopf's watches; tests/unit/test_chart_rbac.py keeps them equal. */}}
{{- define "taskpool.namespacedRules" -}}
# Its own resource: watched by kopf, read by the operator, patched for kopf's finalizer and progress annotations.
- apiGroups: ["taskpool.dev"]
  resources: ["taskworkerpools"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["taskpool.dev"]
  resources: ["taskworkerpools/status"]
  verbs: ["patch"]
# The worker Deployment of each pool: indexed (list/watch), created, replaced and resized. Deletion is left to
# the garbage collector through the owner reference, except the scheduler's when spec.scheduler is turned off.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Worker pods: indexed for orphan detection, patched with controller.kubernetes.io/pod-deletion-cost.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# kopf posts core v1 Events about handlers and scaling decisions.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The pool's database Secret, read by name to probe the queue; never listed or watched.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
