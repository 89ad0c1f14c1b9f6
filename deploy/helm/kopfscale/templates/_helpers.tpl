{{/* The release's full name: names every object the chart makes. */}}
{{- define "kopfscale.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kopfscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kopfscale.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kopfscale.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kopfscale.labels" -}}
{{ include "kopfscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kopfscale
{{- if not .Values.plain.noHelmLabels }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata lines shared by every object: the namespace if any, labels, annotations.
Argument: (list $ctx $namespaced [$annotations]); $annotations are merged over commonAnnotations.
*/}}
{{- define "kopfscale.metadata" -}}
{{- $ctx := index . 0 -}}
{{- $namespaced := index . 1 -}}
{{- $annotations := deepCopy $ctx.Values.commonAnnotations -}}
{{- if gt (len .) 2 }}{{ $annotations = merge (deepCopy (index . 2)) $annotations }}{{ end -}}
{{- if and $namespaced $ctx.Values.plain.namespaceless }}
{{- $_ := set $annotations "checkov.io/skip9" "CKV_K8S_21=Namespace-agnostic on purpose: applied with kubectl apply -n NAMESPACE." }}
{{- end -}}
{{- if and $namespaced (not $ctx.Values.plain.namespaceless) }}
namespace: {{ $ctx.Release.Namespace }}
{{- end }}
labels:
  {{- include "kopfscale.labels" $ctx | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "kopfscale.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Cluster-wide: every namespace is watched (ClusterRole, ClusterKopfPeering). */}}
{{- define "kopfscale.clusterwide" -}}
{{- if and (not .Values.watchNamespaces) (not .Values.plain.namespaceless) -}}true{{- end -}}
{{- end -}}

{{/*
The RBAC rules: exactly what kopf and kopfscale's handlers call, nothing else (no wildcards,
no secrets, no delete: children go with their owners through garbage collection).
Argument: (list $ctx $clusterwide).
*/}}
{{- define "kopfscale.rules" -}}
{{- $ctx := index . 0 -}}
{{- $clusterwide := index . 1 -}}
{{- if $clusterwide }}
# kopf peering (cluster-wide): keep-alives of this replica and the others' (get/list/watch/patch),
# and creating the peering object at startup when it does not exist yet (create).
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch, create]
# kopf: notices kopfscale's CRDs being installed or removed while it runs.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- else }}
# kopf peering (per namespace): keep-alives of this replica and the others' (the KopfPeering
# object comes with the manifests).
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
# kopf and the handlers (kopf.info/warn): Events on Greeters and ScaledApps (kubectl describe).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# kopf watches Greeters and ScaledApps (list/watch); a replica taking over re-lists its ScaledApps.
# No bookkeeping annotations: the controllers have only watch-event handlers.
- apiGroups: [kopfscale.dev]
  resources: [greeters]
  verbs: [get, list, watch]
# ScaledApps also: kopf removes the finalizer earlier releases put on every ScaledApp (patch).
- apiGroups: [kopfscale.dev]
  resources: [scaledapps]
  verbs: [get, list, watch, patch]
# The handlers report conditions and decisions in status.
- apiGroups: [kopfscale.dev]
  resources: [greeters/status, scaledapps/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion; clusters with the
# OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) require this for it.
- apiGroups: [kopfscale.dev]
  resources: [greeters/finalizers, scaledapps/finalizers]
  verbs: [update]
# Greeter children and a ScaledApp's own Deployment: read, create, update by patch; the Greeter
# controller's drift handlers watch the labelled ones (list/watch).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
# Greeter children (the Service in front of the greeting Pods).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# ScaledApp: reads and sets the replicas of its target through /scale (the kinds it may target).
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale, replicasets/scale]
  verbs: [get, patch]
# ScaledApp: Greeters are scalable through /scale too.
- apiGroups: [kopfscale.dev]
  resources: [greeters/scale]
  verbs: [get, patch]
{{- range $ctx.Values.rbac.extraScaleTargets }}
# ScaledApp: extra scale targets from the chart's rbac.extraScaleTargets.
- apiGroups: [{{ .apiGroup | quote }}]
  resources:
  {{- range .resources }}
    - {{ printf "%s/scale" . | quote }}
  {{- end }}
  verbs: [get, patch]
{{- end }}
{{- if $ctx.Values.rbac.readSecrets }}
# ScaledApp metric credentials (valueFrom.secretKeyRef in http/prometheus blocks): read the named
# Secrets; only with rbac.readSecrets (the admission policy checks the author may get them too).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
# ScaledApp's cpu/memory metrics: the Pods' requests and readiness (listed by the target's selector),
# and the ready Pods a Value total counts on a scaleTargetRef workload (as the HPA does) ...
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# ... and their usage, from metrics-server's PodMetrics.
- apiGroups: [metrics.k8s.io]
  resources: [pods]
  verbs: [list]
# ScaledApp: one autoscaler per workload. HPAs (KEDA's among them) are watched, never written,
# to find the workloads they already drive; a ScaledApp on such a target yields (Conflict).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch]
{{- end -}}
