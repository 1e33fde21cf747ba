{{- define "keyvirt.labels" -}}
app.kubernetes.io/part-of: keyvirt
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "keyvirt.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{ printf "%s:%s" .image.repository $tag }}
{{- end }}
