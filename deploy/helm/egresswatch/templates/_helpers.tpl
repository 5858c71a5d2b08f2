{{/* Names, labels and the agent's config file. */}}

{{- define "egresswatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "egresswatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "egresswatch.serviceAccountName" -}}
{{- default (include "egresswatch.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "egresswatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egresswatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "egresswatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "egresswatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Where receiver secrets are mounted; one projected volume holds them all. */}}
{{- define "egresswatch.secretsDir" -}}/run/secrets/egresswatch{{- end -}}

{{/*
The agent's config file (docs/configuration.md). node_name is left out:
EGRESSWATCH_NODE_NAME carries the pod's spec.nodeName.
*/}}
{{- define "egresswatch.config" -}}
{{- $v := .Values -}}
{{- $dir := include "egresswatch.secretsDir" . -}}
{{- $c := dict
  "data_dir" $v.config.dataDir
  "listen" $v.config.listen
  "log_level" $v.config.logLevel
  "containerd" (dict "socket" $v.config.containerd.socket "namespaces" ($v.config.containerd.namespaces | default list))
  "learning" (dict "period" $v.config.learning.period "stability_window" $v.config.learning.stabilityWindow "max_period" $v.config.learning.maxPeriod)
  "storage" (dict "retention" $v.config.storage.retention)
-}}
{{- if $v.influx.url -}}
{{- $_ := set $c "influx" (dict "url" $v.influx.url "bucket" $v.influx.bucket "org" $v.influx.org) -}}
{{- end -}}
{{- $receivers := list -}}
{{- range $v.alerts.receivers -}}
{{- $r := dict "name" .name "type" .type -}}
{{- if .urlSecret -}}
{{- $_ := set $r "url_file" (printf "%s/receivers/%s/url" $dir .name) -}}
{{- else if .url -}}
{{- $_ := set $r "url" .url -}}
{{- end -}}
{{- if .secretSecret -}}
{{- $_ := set $r "secret_file" (printf "%s/receivers/%s/secret" $dir .name) -}}
{{- end -}}
{{- with .minSeverity }}{{ $_ := set $r "min_severity" . }}{{ end -}}
{{- with .timeout }}{{ $_ := set $r "timeout" . }}{{ end -}}
{{- with .kinds }}{{ $_ := set $r "kinds" . }}{{ end -}}
{{- with .namespaces }}{{ $_ := set $r "namespaces" . }}{{ end -}}
{{- with .workloads }}{{ $_ := set $r "workloads" . }}{{ end -}}
{{- with .ratePerMinute }}{{ $_ := set $r "rate_per_minute" (int .) }}{{ end -}}
{{- with .generatorURL }}{{ $_ := set $r "generator_url" . }}{{ end -}}
{{- $receivers = append $receivers $r -}}
{{- end -}}
{{- if or $receivers $v.alerts.extra -}}
{{- $alerts := deepCopy ($v.alerts.extra | default dict) -}}
{{- if $receivers }}{{ $_ := set $alerts "receivers" $receivers }}{{ end -}}
{{- $_ := set $c "alerts" $alerts -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $c (deepCopy ($v.config.extra | default dict))) -}}
{{- end -}}
