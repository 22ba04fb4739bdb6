{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "gridscope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release already contains it. */}}
{{- define "gridscope.fullname" -}}
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

{{- define "gridscope.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gridscope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gridscope.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gridscope.labels" -}}
helm.sh/chart: {{ include "gridscope.chart" . }}
{{ include "gridscope.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gridscope
{{- end }}

{{- define "gridscope.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gridscope.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "gridscope.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "gridscope.sessionSecretName" -}}
{{- default (printf "%s-sessions" (include "gridscope.fullname" .)) .Values.sessions.existingSecret }}
{{- end }}

{{- define "gridscope.daskClusterName" -}}
{{- printf "%s-dask" (include "gridscope.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* Websocket origins: explicit list, else every ingress host. */}}
{{- define "gridscope.websocketOrigins" -}}
{{- $origins := list }}
{{- if .Values.server.allowWebsocketOrigins }}
{{- $origins = .Values.server.allowWebsocketOrigins }}
{{- else if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}
{{- $origins = append $origins .host }}
{{- end }}
{{- end }}
{{- $origins | uniq | join "," }}
{{- end }}

{{/* Scheduler address handed to the server, by dask.mode. */}}
{{- define "gridscope.schedulerAddress" -}}
{{- if eq .Values.dask.mode "scheduler" }}
{{- required "dask.schedulerAddress is required when dask.mode is scheduler" .Values.dask.schedulerAddress }}
{{- else if eq .Values.dask.mode "operator" }}
{{- printf "tcp://%s-scheduler.%s.svc:8786" (include "gridscope.daskClusterName" .) .Release.Namespace }}
{{- end }}
{{- end }}
