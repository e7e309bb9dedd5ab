{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "shipmate.fullname" -}}
{{- if contains "shipmate" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-shipmate" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shipmate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: shipmate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shipmate
{{- end -}}

{{- define "shipmate.agentSelectorLabels" -}}
app.kubernetes.io/name: shipmate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: management-agent
{{- end -}}

{{- define "shipmate.agentServiceAccountName" -}}
{{- if .Values.managementAgent.serviceAccount.create -}}
{{- .Values.managementAgent.serviceAccount.name | default (printf "%s-agent" (include "shipmate.fullname" .)) -}}
{{- else -}}
{{- .Values.managementAgent.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "shipmate.imageBuilderServiceAccountName" -}}
{{- if .Values.imageBuilder.serviceAccount.create -}}
{{- .Values.imageBuilder.serviceAccount.name | default (printf "%s-image-builder" (include "shipmate.fullname" .)) -}}
{{- else -}}
{{- .Values.imageBuilder.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Required values, with Shipmate's aliases winning over the documented names ------------- */}}

{{- define "shipmate.apiSecretName" -}}
{{- .Values.shipmate.apiSecretName | default .Values.datarobot.apiSecretName | required "datarobot.apiSecretName (or shipmate.apiSecretName) is required: the name of the Secret holding the agent's API token, e.g. kubectl -n <namespace> create secret generic mlops-api-key --from-literal=secret=<TOKEN>" -}}
{{- end -}}

{{- define "shipmate.environmentId" -}}
{{- .Values.shipmate.environmentId | default .Values.datarobot.predictionEnvId | required "datarobot.predictionEnvId (or shipmate.environmentId) is required: the id of the prediction environment this agent manages" -}}
{{- end -}}

{{- define "shipmate.agentImage" -}}
{{- $repository := .Values.managementAgent.repository | required "managementAgent.repository is required: the agent image repository, e.g. registry.your-company.com/shipmate/agent" -}}
{{- printf "%s:%s" $repository (.Values.managementAgent.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The agent's config file (shipmate agent --config /etc/shipmate/agent.yaml).
Every key the chart gives the agent is here, in one place. The API token is not:
it reaches the agent only as the MLOPS_API_TOKEN environment variable, from the Secret.
*/}}
{{- define "shipmate.agentConfig" -}}
{{- $actionBudget := add .Values.imageBuilder.timeoutSeconds (mul 2 .Values.predictionServer.rolloutTimeoutSeconds) 120 -}}
serviceUrl: {{ .Values.shipmate.serviceUrl | required "shipmate.serviceUrl is required: the URL of the Shipmate service the agent talks to, e.g. https://shipmate.example.com" | quote }}
environmentId: {{ include "shipmate.environmentId" . | quote }}
workDir: /var/lib/shipmate-agent
plugin:
  name: kubernetes
  privateConfig: /etc/shipmate/plugin.k8s.conf.yaml
metrics:
  host: 0.0.0.0
  port: {{ .Values.managementAgent.metricsPort }}
timeouts:
  deploymentStart: {{ $actionBudget }}
  deploymentReplaceModel: {{ $actionBudget }}
  deploymentRelaunch: {{ $actionBudget }}
{{- end -}}

{{/* The Kubernetes plugin's private config (plugin.k8s.conf.yaml). */}}
{{- define "shipmate.pluginConfig" -}}
{{- $ps := .Values.predictionServer -}}
{{- $ib := .Values.imageBuilder -}}
{{- if and $ib.configMap $ib.secretName -}}
{{- fail "imageBuilder.configMap and imageBuilder.secretName are exclusive: both would become Kaniko's config.json; set one" -}}
{{- end -}}
{{- if hasSuffix ":latest" ($ib.ppsImage | default "") -}}
{{- fail "imageBuilder.ppsImage must use a versioned tag, not :latest: model images are built FROM it and must be reproducible" -}}
{{- end -}}
{{- $cfg := dict
  "kubeConfigContext" "IN_CLUSTER"
  "kubeNamespace" .Release.Namespace
  "outfacingPredictionURLPrefix" ($ps.outfacingUrlRoot | required "predictionServer.outfacingUrlRoot is required: the external URL prefix of the deployments, e.g. https://models.your-company.com/deployments/" | trimSuffix "/")
  "ingressType" $ps.ingressType
  "ppsBaseImage" ($ib.ppsImage | required "imageBuilder.ppsImage is required: the prediction-server base image with a versioned tag, e.g. registry.your-company.com/shipmate/prediction-server:0.1.0")
  "generatedImageRepo" ($ib.generatedImageRepository | required "imageBuilder.generatedImageRepository is required: the repository model images are pushed to, e.g. registry.your-company.com/mlops/frozen-models")
  "kanikoImage" $ib.kanikoImage
  "kanikoServiceAccount" (include "shipmate.imageBuilderServiceAccountName" .)
  "kanikoInsecureRegistries" $ib.insecureRegistries
  "kanikoSkipSslVerifyRegistries" $ib.skipSslVerifyRegistries
  "kanikoExtraArguments" $ib.extraArguments
  "kanikoExtraVolumes" $ib.extraVolumes
  "kanikoExtraVolumeMounts" $ib.extraVolumeMounts
  "kanikoResources" $ib.resources
  "ppsServiceAccount" ($ps.serviceAccountName | default "default")
  "ppsResources" $ps.resources
  "ppsCpuUtilizationPercent" $ps.cpuUtilizationPercent
  "imagePullSecrets" $ps.imagePullSecrets
  "ppsNodeSelector" $ps.nodeSelector
  "ppsTolerations" $ps.tolerations
  "ppsAffinity" $ps.affinity
  "ppsExtraEnvironment" $ps.extraEnv
  "kanikoNodeSelector" $ib.nodeSelector
  "kanikoTolerations" $ib.tolerations
  "kanikoAffinity" $ib.affinity
  "rolloutTimeoutSeconds" $ps.rolloutTimeoutSeconds
  "progressDeadlineSeconds" $ps.progressDeadlineSeconds
  "buildTimeoutSeconds" $ib.timeoutSeconds
-}}
{{- with $ps.ingressClassName }}{{ $_ := set $cfg "ingressClass" . }}{{ end -}}
{{- with $ib.configMap }}{{ $_ := set $cfg "kanikoConfigmapName" . }}{{ end -}}
{{- with $ib.secretName }}{{ $_ := set $cfg "kanikoSecretName" . }}{{ end -}}
{{- $ta := .Values.trackingAgent -}}
{{- with $ta.image }}{{ $_ := set $cfg "agentImage" . }}{{ end -}}
{{- if and $ta.image $ta.enabled -}}
{{- if and (not $ta.sidecar) (not $ta.spoolerSettings) -}}
{{- fail "trackingAgent.spoolerSettings is required with trackingAgent.sidecar false: the channel the prediction servers report to" -}}
{{- end -}}
{{- $_ := set $cfg "MLOPS_BOSUN_PRED_ENV_ENABLE_MONITORING" true -}}
{{- $_ := set $cfg "MLOPS_BOSUN_MONITORING_URL" ($ta.serviceUrl | default .Values.shipmate.serviceUrl) -}}
{{- $_ := set $cfg "agentSidecar" $ta.sidecar -}}
{{- $_ := set $cfg "agentApiSecretName" (include "shipmate.apiSecretName" .) -}}
{{- $_ := set $cfg "agentApiSecretKey" .Values.datarobot.apiSecretKey -}}
{{- $_ := set $cfg "agentResources" $ta.resources -}}
{{- if kindIs "map" $ta.securityContext }}{{ $_ := set $cfg "agentSecurityContext" $ta.securityContext }}{{ end -}}
{{- with $ta.spoolerSettings }}{{ $_ := set $cfg "spoolerSettings" . }}{{ end -}}
{{- end -}}
{{- if kindIs "map" $ps.podSecurityContext }}{{ $_ := set $cfg "ppsPodSecurityContext" $ps.podSecurityContext }}{{ end -}}
{{- if kindIs "map" $ps.securityContext }}{{ $_ := set $cfg "ppsSecurityContext" $ps.securityContext }}{{ end -}}
{{ toYaml $cfg }}
{{- end -}}
