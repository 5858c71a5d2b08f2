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

{{/* Where secrets are mounted; one projected volume holds them all. */}}
{{- define "egresswatch.secretsDir" -}}/run/secrets/egresswatch{{- end -}}

{{/* The file the API token is mounted at, given as api_token_file. */}}
{{- define "egresswatch.apiTokenFile" -}}{{ include "egresswatch.secretsDir" . }}/api/token{{- end -}}

{{/* The Secret holding the API token: the user's, or the one the chart creates. */}}
{{- define "egresswatch.apiTokenSecret" -}}
{{- .Values.apiToken.existingSecret | default (printf "%s-api-token" (include "egresswatch.fullname" .)) -}}
{{- end -}}

{{/* The host part of config.listen, without an IPv6 address's brackets. */}}
{{- define "egresswatch.listenHost" -}}
{{- regexReplaceAll ":[^:]*$" .Values.config.listen "" | trimPrefix "[" | trimSuffix "]" -}}
{{- end -}}

{{/*
"true" when config.listen is a loopback IP. The agent also takes
"localhost" as loopback (agent.IsLoopback), but the kubelet's probes need an
address.
*/}}
{{- define "egresswatch.listenLoopbackIP" -}}
{{- $h := include "egresswatch.listenHost" . -}}
{{- if or (regexMatch "^127([.](25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$" $h) (eq $h "::1") }}true{{ end -}}
{{- end -}}

{{/*
Fails the render when the agent would refuse to start: a listener other
hosts can reach needs an API token (docs/security.md). An extraEnv
EGRESSWATCH_API_TOKEN (from a Secret of the user's) counts too.
*/}}
{{- define "egresswatch.validateAPIToken" -}}
{{- $v := .Values -}}
{{- if and $v.apiToken.create $v.apiToken.existingSecret -}}
{{- fail "apiToken.create and apiToken.existingSecret are exclusive: let the chart create the token's Secret, or name yours" -}}
{{- end -}}
{{- $given := or $v.apiToken.create $v.apiToken.existingSecret -}}
{{- range $v.extraEnv -}}
{{- if eq .name "EGRESSWATCH_API_TOKEN" }}{{ $given = true }}{{ end -}}
{{- end -}}
{{- $h := lower (include "egresswatch.listenHost" .) -}}
{{- if not (or $given (include "egresswatch.listenLoopbackIP" .) (eq $h "localhost")) -}}
{{- fail (printf "config.listen %s is not a loopback address, and the agent refuses to serve its API beyond the node without a token: set apiToken.create=true (a random token in a Secret) or apiToken.existingSecret (and apiToken.key), or listen on 127.0.0.1" $v.config.listen) -}}
{{- end -}}
{{- end -}}

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
{{- if or $v.apiToken.create $v.apiToken.existingSecret -}}
{{- $_ := set $c "api_token_file" (include "egresswatch.apiTokenFile" .) -}}
{{- end -}}
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
