{{- define "keyvirt.labels" -}}
app.kubernetes.io/part-of: keyvirt
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- /* KUBERNETES_SERVICE_HOST/PORT set to kubernetesApi (clusters without kube-proxy); nothing when unset. */ -}}
{{- define "keyvirt.apiServerEnv" -}}
{{- with .Values.kubernetesApi.host -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ $.Values.kubernetesApi.port | quote }}
{{- end -}}
{{- end }}

{{- /* registry/repository:tag; the registry is the image's own, else imageRegistry, else none (docs/adr/0059). */ -}}
{{- define "keyvirt.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- $registry := .image.registry | default .root.Values.imageRegistry | default "" -}}
{{- if $registry -}}
{{ printf "%s/%s:%s" $registry .image.repository $tag }}
{{- else -}}
{{ printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}
